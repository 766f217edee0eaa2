"""Deep prompts: trainable prefix keys/values for every selected layer (P-Tuning v2).

For each selected layer l the prompt supplies keys K_l and values V_l of shape
[B, heads, P, head_dim]. The backbone concatenates them in front of the layer's own keys and
values at the attention computation; prefix positions issue no queries and carry no position
embedding, so the real tokens' positions do not move.

Two parameterisations (paper §3.3):
  * ``embedding``: a table [P, n_sel * 2 * H] trained directly;
  * ``mlp``: an embedding [P, H] fed through Linear(H, h') -> tanh -> Linear(h', n_sel * 2 * H).
The MLP's output does not depend on the input, so after training it collapses into the
embedding form exactly (``collapsed_table``); artifacts store only that table.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..dropout import FastDropout
from ..errors import UserError

Prefix = list  # list[tuple[Tensor, Tensor] | None], one entry per backbone layer


@dataclass(frozen=True)
class PrefixShape:
    """What the backbone needs to know to shape prefixes for it."""

    num_layers: int
    num_heads: int
    head_dim: int

    @property
    def hidden_size(self) -> int:
        return self.num_heads * self.head_dim


class DeepPrompt(nn.Module):
    """Produces per-layer prefix keys/values.

    Args:
        shape: the backbone's layer count and attention geometry.
        prefix_len: P, prefix positions per layer.
        layers: 0-based indices of the layers that get a prefix (others get ``None``).
        reparam: ``"embedding"`` or ``"mlp"``.
        prefix_hidden: h', the MLP's inner width (``mlp`` only).
        dropout: dropout on the produced keys/values while training.
    """

    def __init__(self, shape: PrefixShape, prefix_len: int, layers: tuple[int, ...],
                 reparam: str = "embedding", prefix_hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        if prefix_len < 0:
            raise UserError(f"--prefix-len must be >= 0, got {prefix_len}")
        if reparam not in ("embedding", "mlp"):
            raise UserError(f"--reparam must be 'embedding' or 'mlp', got {reparam!r}")
        self.shape = shape
        self.prefix_len = prefix_len
        self.layers = tuple(layers)
        self.reparam = reparam
        out_dim = len(self.layers) * 2 * shape.hidden_size
        if reparam == "embedding":
            self.table = nn.Parameter(torch.empty(prefix_len, out_dim))
            nn.init.normal_(self.table, std=0.02)
        else:
            self.embedding = nn.Parameter(torch.empty(prefix_len, shape.hidden_size))
            nn.init.normal_(self.embedding, std=0.02)
            self.mlp = nn.Sequential(
                nn.Linear(shape.hidden_size, prefix_hidden),
                nn.Tanh(),
                nn.Linear(prefix_hidden, out_dim),
            )
        self.dropout = FastDropout(dropout)

    def collapsed_table(self) -> torch.Tensor:
        """The prefix table [P, n_sel * 2 * H] that the current weights produce (no dropout)."""
        if self.reparam == "embedding":
            return self.table
        return self.mlp(self.embedding)

    @torch.no_grad()
    def to_embedding_form(self) -> "DeepPrompt":
        """A new ``embedding``-form prompt whose outputs equal this one's (the export step)."""
        collapsed = DeepPrompt(self.shape, self.prefix_len, self.layers, "embedding",
                               dropout=self.dropout.p)
        collapsed.table.copy_(self.collapsed_table().float())
        return collapsed

    def forward(self, batch_size: int) -> Prefix:
        """Returns a list with one entry per backbone layer: ``None`` or ``(k, v)``, each
        [B, heads, P, head_dim]."""
        P, s = self.prefix_len, self.shape
        n = 2 * len(self.layers)
        # [P, n_sel*2*H] -> [n_sel*2, 1, heads, P, head_dim], broadcast over the batch
        kv = self.collapsed_table().view(P, n, s.num_heads, s.head_dim).permute(1, 2, 0, 3)
        kv = kv.unsqueeze(1).expand(n, batch_size, s.num_heads, P, s.head_dim)
        # dropout draws a separate mask per example (it materialises the batch only while
        # training); unbind's backward is a single stack, where slicing each layer out would
        # build a full-size gradient buffer per slice
        pieces = self.dropout(kv).unbind(0)
        prefix: Prefix = [None] * s.num_layers
        for slot, layer in enumerate(self.layers):
            prefix[layer] = (pieces[2 * slot], pieces[2 * slot + 1])
        return prefix
