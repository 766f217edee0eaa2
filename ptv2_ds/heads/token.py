"""Heads on every token: hidden states [B, S, H] -> per-token scores.

``token``  dropout + Linear(H, T): one score per tag for every token (NER, SRL; the official
           code's token-classification head).
``span``   Linear(H, 2): start and end logits for every token (extractive QA; the official
           code puts no dropout on the sequence output). Returns [B, S, 2].
"""
from __future__ import annotations

import torch
from torch import nn

from ..dropout import FastDropout


def _linear(hidden_size: int, out: int) -> nn.Linear:
    layer = nn.Linear(hidden_size, out)
    nn.init.normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)
    return layer


class TokenHead(nn.Module):
    def __init__(self, hidden_size: int, num_tags: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = FastDropout(dropout)
        self.classifier = _linear(hidden_size, num_tags)

    def forward(self, hidden: torch.Tensor, batch: dict, backbone) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))  # [B, S, T]


class SpanHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.qa_outputs = _linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor, batch: dict, backbone) -> torch.Tensor:
        return self.qa_outputs(hidden)  # [B, S, 2]: start, end
