"""GLM backbone (GLM-Large, GLM-2B, GLM-10B, GLM-10B-Chinese), usable without ptv2_ds."""
