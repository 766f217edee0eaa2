"""Shallow prompts at the input layer only: the paper's baselines.

``none``  -- Lester et al. (2021): a plain trainable embedding [P, H] prepended to the input.
``mlp``   -- P-tuning (Liu et al., 2021): embedding -> Linear -> ReLU -> Linear.
``lstm``  -- P-tuning: embedding -> 2-layer bidirectional LSTM -> Linear -> ReLU -> Linear.
Like the deep prompt's MLP, every encoder's output is input-independent, so it collapses into a
plain table for the artifact.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError


class InputPrompt(nn.Module):
    """Produces [B, P, H] prompt embeddings that the backbone prepends to the token embeddings."""

    def __init__(self, hidden_size: int, prompt_len: int, encoder: str = "none"):
        super().__init__()
        if prompt_len < 1:
            raise UserError(f"--prefix-len must be >= 1 for --method prompt, got {prompt_len}")
        if encoder not in ("none", "mlp", "lstm"):
            raise UserError(f"--prompt-encoder must be none, mlp or lstm, got {encoder!r}")
        self.hidden_size = hidden_size
        self.prompt_len = prompt_len
        self.encoder = encoder
        self.table = nn.Parameter(torch.empty(prompt_len, hidden_size))
        nn.init.normal_(self.table, std=0.02)
        if encoder == "lstm":
            self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=2,
                                bidirectional=True, batch_first=True)
        if encoder in ("mlp", "lstm"):
            self.mlp = nn.Sequential(nn.Linear(hidden_size if encoder == "mlp" else
                                               2 * (hidden_size // 2), hidden_size),
                                     nn.ReLU(), nn.Linear(hidden_size, hidden_size))

    def collapsed_table(self) -> torch.Tensor:
        """The prompt embeddings [P, H] that the current weights produce."""
        x = self.table
        if self.encoder == "lstm":
            x = self.lstm(x.unsqueeze(0))[0].squeeze(0)
        if self.encoder in ("mlp", "lstm"):
            x = self.mlp(x)
        return x

    @torch.no_grad()
    def to_embedding_form(self) -> "InputPrompt":
        collapsed = InputPrompt(self.hidden_size, self.prompt_len, "none")
        collapsed.table.copy_(self.collapsed_table().float())
        return collapsed

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.collapsed_table().unsqueeze(0).expand(batch_size, -1, -1)
