"""Heads on [CLS] that turn backbone hidden states [B, S, H] into class scores [B, C].

``linear``      dropout + a randomly initialised Linear on the first ([CLS]) token (no
                verbalizer). On GLM it means GLM's own head, ``pooler``.
``mean``        dropout + Linear on the mean of the real tokens' hidden states (special tokens
                included, padding excluded): the pooling sentence-embedding encoders such as
                all-MiniLM are trained with, whose [CLS] state is not trained to summarise.
``pooler``      tanh(Linear(H, H)) on [CLS] -> dropout -> Linear. On BERT/RoBERTa checkpoints
                that carry a pretrained pooler, that frozen pooler is used (the official
                P-Tuning v2 head); otherwise (GLM) a trainable one.
``verbalizer``  the backbone's own LM head scores one label word per class at the cloze
                position (paper Table 5); it has no parameters of its own.
"""
from __future__ import annotations

import torch
from torch import nn

from ..dropout import FastDropout
from ..errors import UserError


class LinearHead(nn.Module):
    def __init__(self, hidden_size: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = FastDropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, hidden: torch.Tensor, batch: dict, backbone) -> torch.Tensor:
        first = hidden[:, 0]  # [B, H]
        return self.classifier(self.dropout(first))


class MeanPoolHead(LinearHead):
    """dropout + Linear on the attention-mask-weighted mean of hidden states [B, S, H]."""

    def forward(self, hidden, batch, backbone):
        mask = batch["attention_mask"][:, : hidden.shape[1]].to(hidden.dtype)  # [B, S]
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.classifier(self.dropout(pooled))


class PoolerHead(LinearHead):
    """tanh(dense([CLS])) -> dropout -> Linear. ``pretrained``: the backbone's own pooler
    module (frozen with the backbone); without one the dense layer is new and trains."""

    def __init__(self, hidden_size: int, num_classes: int, dropout: float = 0.1,
                 pretrained: nn.Module | None = None):
        super().__init__(hidden_size, num_classes, dropout)
        if pretrained is None:
            self.dense = nn.Linear(hidden_size, hidden_size)
            nn.init.normal_(self.dense.weight, std=0.02)
            nn.init.zeros_(self.dense.bias)
        # the backbone owns a pretrained pooler: keep it out of this module's parameters
        # (and of the artifact); it is reached through the backbone at forward time
        self.uses_backbone_pooler = pretrained is not None

    def forward(self, hidden, batch, backbone):
        if self.uses_backbone_pooler:
            pooled = backbone.pretrained_pooler(hidden)  # tanh(dense(hidden[:, 0]))
        else:
            pooled = torch.tanh(self.dense(hidden[:, 0]))
        return self.classifier(self.dropout(pooled))


class VerbalizerHead(nn.Module):
    """Class scores = LM logits at ``batch["mask_index"]`` over the label-word token ids."""

    def __init__(self, label_token_ids: list[int]):
        super().__init__()
        self.register_buffer("label_token_ids", torch.tensor(label_token_ids), persistent=False)

    def forward(self, hidden, batch, backbone):
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        at_mask = hidden[rows, batch["mask_index"]]  # [B, H]
        return backbone.lm_logits(at_mask)[:, self.label_token_ids]


def verbalizer_token_ids(backbone, words: list[str]) -> list[int]:
    """One token id per label word; a word that is several tokens is an error naming it."""
    ids = []
    for word in words:
        candidates = [backbone.encode_text(word), backbone.encode_text(" " + word.strip())]
        single = [c for c in candidates if len(c) == 1]
        if not single:
            raise UserError(
                f"verbalizer word {word!r} is {len(candidates[0])} tokens for "
                f"{backbone.name_or_path}; each label word must be a single token: pick "
                "another word with --verbalizer w1,w2,... (one per class, in label order)")
        ids.append(single[-1][0])
    if len(set(ids)) != len(ids):
        raise UserError(f"verbalizer words {words} map to repeated token ids {ids}; give "
                      "each class a different word (--verbalizer)")
    return ids


