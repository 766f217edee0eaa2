"""Trainable prompts: deep per-layer prefixes (P-Tuning v2) and shallow input prompts."""
from .deep import DeepPrompt, Prefix, PrefixShape
from .layers import parse_prefix_layers
from .shallow import InputPrompt

__all__ = ["DeepPrompt", "InputPrompt", "Prefix", "PrefixShape", "parse_prefix_layers"]
