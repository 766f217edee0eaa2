"""Prefix injection at the attention computation of Hugging Face encoders.

Transformers lets a model route attention through a registered function
(``AttentionInterface``). We register ``"ptv2_sdpa"``: scaled-dot-product attention that first
concatenates the layer's prefix keys/values in front of the real ones and widens the mask
with the prefix columns. Nothing goes through ``past_key_values``/``cache`` (whose handling
changed under PEFT more than once, see DESIGN §6), position ids are computed by the model
from the real tokens only, and the prefix reaches the function as a keyword argument that
the encoder forwards unchanged, so activation checkpointing sees it as an ordinary input.
"""
from __future__ import annotations

import torch

from .. import dropout as fast_dropout

ATTN_IMPLEMENTATION = "ptv2_sdpa"
_registered = False


def prefix_sdpa_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, scaling: float | None = None,
                          dropout: float = 0.0, ptv2_prefix=None, ptv2_prefix_mask=None,
                          ptv2_mask_cache: dict | None = None, **_ignored):
    """Attention over ``cat(prefix, real)`` keys/values.

    Args:
        query, key, value: [B, heads, S, head_dim] projections of the real tokens.
        attention_mask: None, or a [B, 1, S, S] mask (bool: True = visible; float: additive).
        ptv2_prefix: None or a list (one entry per layer) of None / (k, v), [B, heads, P, d],
            or (k, v, mask [B, P]) for a layer with its own prefix mask.
        ptv2_prefix_mask: None or [B, P] (1 = visible) hiding prefix positions per example.
        ptv2_mask_cache: a dict that lives for one forward pass: the widened mask is built by
            the first layer and reused by the others.
    Returns:
        ([B, S, heads, head_dim] output, None) as transformers expects.
    """
    layer = getattr(module, "ptv2_layer", None)
    kv = ptv2_prefix[layer] if (ptv2_prefix is not None and layer is not None) else None
    if kv is not None:
        prefix_k, prefix_v = kv[0], kv[1]
        if len(kv) > 2:  # (k, v, [B, P] mask): this layer's own mask (serving/multitask.py)
            ptv2_prefix_mask, ptv2_mask_cache = kv[2], None
        P = prefix_k.shape[2]
        key = torch.cat([prefix_k.to(key.dtype), key], dim=2)
        value = torch.cat([prefix_v.to(value.dtype), value], dim=2)
        cached = ptv2_mask_cache.get(P) if ptv2_mask_cache is not None else None
        if cached is not None and cached[0] is attention_mask:
            attention_mask = cached[1]
        else:
            widened = _widen_mask(attention_mask, ptv2_prefix_mask, query, P)
            if ptv2_mask_cache is not None:  # keyed by P; `is` guards against another mask
                ptv2_mask_cache[P] = (attention_mask, widened)
            attention_mask = widened
    # F.scaled_dot_product_attention, except that dropout on CPU uses the cheap masks
    out = fast_dropout.attention(query, key, value, attention_mask, dropout, scaling)
    return out.transpose(1, 2).contiguous(), None


def _widen_mask(mask: torch.Tensor | None, prefix_mask: torch.Tensor | None,
                query: torch.Tensor, P: int) -> torch.Tensor | None:
    """Prepend P prefix columns to a [B, 1, S, S] mask (visible unless ``prefix_mask`` hides)."""
    if mask is None and prefix_mask is None:
        return None
    B, _, S, _ = query.shape
    if mask is None:
        mask = torch.ones(B, 1, S, S, dtype=torch.bool, device=query.device)
    if prefix_mask is None:
        cols = torch.ones(B, 1, S, P, dtype=torch.bool, device=query.device)
    else:
        cols = prefix_mask.to(device=query.device, dtype=torch.bool)[:, None, None, :]
        cols = cols.expand(B, 1, S, P)
    if mask.dtype != torch.bool:  # additive float mask: 0 = visible, very negative = hidden
        cols = torch.zeros_like(cols, dtype=mask.dtype).masked_fill(
            ~cols, torch.finfo(mask.dtype).min)
    return torch.cat([cols, mask.expand(B, 1, S, mask.shape[-1])], dim=-1)


def register_prefix_attention() -> str:
    """Register the attention (and its boolean mask builder) with transformers, once."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_sdpa_attention)
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
        _registered = True
    return ATTN_IMPLEMENTATION
