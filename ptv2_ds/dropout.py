"""Dropout that is cheap on CPU, with the same distribution as PyTorch's.

On CPU, PyTorch draws a dropout mask with ``bernoulli_``: one single-threaded float draw per
element, followed by a division and a multiplication. In a prompt-tuning step that is a large
share of the time (the attention-probability masks alone are B x heads x S x (P + S) per layer,
and they also force SDPA off its fused CPU kernel onto the math path). Here the mask comes from
64-bit integer draws of the same generator (``random_`` over the full int64 range), each split
into two independent 32-bit words: an element is dropped when its word falls below
``round(p * 2**32)``, so the drop probability is ``p`` to within 2**-33 (PyTorch's own float
draw resolves 2**-24). Four times fewer generator calls, one pass from the draws to the mask, and
the 1 / (1 - p) scale applied once (to the [S, d] attention output rather than the [S, K]
probabilities).

What it computes is dropout, unchanged in distribution; the individual masks differ from
``bernoulli_``'s for the same seed. ``set_cpu_dropout("torch")`` restores PyTorch's draws (for
bit-for-bit comparisons with runs of earlier versions). On GPUs, and in eval mode, everything
goes through ``torch.nn.functional`` as before.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

CPU_DROPOUT_MODES = ("fast", "torch")
_mode = "fast"


def set_cpu_dropout(mode: str) -> None:
    """``fast``: masks from 64-bit integer draws (default); ``torch``: PyTorch's bernoulli_."""
    global _mode
    if mode not in CPU_DROPOUT_MODES:
        raise UserError(f"--cpu-dropout must be one of {', '.join(CPU_DROPOUT_MODES)}, "
                        f"got {mode!r}")
    _mode = mode


def uses_fast_path(x: torch.Tensor, p: float, training: bool) -> bool:
    """True when ``x`` gets this module's masks: training, 0 < p < 1, a CPU tensor, fast mode."""
    return training and 0.0 < p < 1.0 and x.device.type == "cpu" and _mode == "fast"


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, scale: float = 1.0,
              dtype: torch.dtype = torch.float32,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A CPU tensor of ``shape`` whose elements are independently 0 with probability ``p`` and
    ``scale`` otherwise. Draws ceil(n / 2) 64-bit integers from ``generator`` (default: the
    global CPU generator, so checkpointed RNG state covers it)."""
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64)
    words.random_(-2**63, None, generator=generator)  # every bit uniform
    # each 32-bit half is uniform over the int32 range: below the threshold with probability p
    threshold = -2**31 + round(p * 2**32)
    mask = torch.empty(shape, dtype=dtype)
    torch.ge(words.view(torch.int32)[:n].view(shape), threshold, out=mask)  # one pass to 0/1
    return mask if scale == 1.0 else mask.mul_(scale)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the fast CPU masks where they apply. Autograd keeps
    the mask (as PyTorch's CPU dropout does), not ``x``."""
    if not uses_fast_path(x, p, training):
        return F.dropout(x, p, training)
    return x * keep_mask(x.shape, p, 1.0 / (1.0 - p), x.dtype)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training masks come from ``keep_mask`` (same p, same module
    name in state dicts and configs: it holds no state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return F.dropout(x, self.p, self.training, inplace=True)
        return dropout(x, self.p, self.training)


def use_fast_dropout(module: nn.Module) -> int:
    """Turn every plain ``nn.Dropout`` inside ``module`` into a ``FastDropout`` with the same
    p (in place: the class is swapped, parameters and hooks stay). Returns how many."""
    count = 0
    for sub in module.modules():
        if type(sub) is nn.Dropout:
            sub.__class__ = FastDropout
            count += 1
    return count


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attn_mask: torch.Tensor | None, dropout_p: float, scale: float | None
              ) -> torch.Tensor:
    """Scaled dot-product attention with attention-probability dropout.

    Args:
        query: [B, heads, S, d]; key, value: [B, heads, K, d].
        attn_mask: None, bool [B or 1, 1, S, K] (True = visible) or additive float.
        dropout_p: drop probability of each attention weight (training).
        scale: factor on q.k (default 1 / sqrt(d)).
    Returns:
        [B, heads, S, d]. Uses ``F.scaled_dot_product_attention`` unless the fast CPU dropout
        applies; then the same math (softmax over masked scores, dropout, weighted values) with
        ``keep_mask``'s masks and the 1 / (1 - p) scale folded into the [S, d] output. A row
        with every key hidden attends uniformly instead of producing NaN (as transformers'
        additive masks do).
    """
    if not uses_fast_path(query, dropout_p, True):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                              dropout_p=dropout_p, scale=scale)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attn_mask
    probs = torch.softmax(scores, dim=-1) * keep_mask(scores.shape, dropout_p, 1.0, scores.dtype)
    return torch.matmul(probs, value) * (1.0 / (1.0 - dropout_p))
