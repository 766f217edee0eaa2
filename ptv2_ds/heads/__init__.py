"""Task heads: hidden states [B, S, H] -> the scores a task family's loss reads.

Sequence heads (classification, [B, C]): ``linear``, ``mean``, ``pooler``, ``verbalizer``
(``heads/sequence.py``). Token heads: ``token`` ([B, S, T], tagging) and ``span``
([B, S, 2], extractive QA) (``heads/token.py``). A task family says which it accepts.
"""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from .sequence import LinearHead, MeanPoolHead, PoolerHead, VerbalizerHead, verbalizer_token_ids
from .token import SpanHead, TokenHead

HEADS = ("linear", "mean", "pooler", "verbalizer", "token", "span")


def resolve_auto_head(model: str, model_path: str | None, families: list[str]
                      ) -> tuple[str, str]:
    """What ``--head auto`` means for a run on ``model`` with tasks of ``families``: ``mean``
    when every task classifies and the checkpoint declares mean pooling (a sentence-embedding
    encoder: its [CLS] state was never trained to summarise the input), else ``linear``.
    Returns the head and the reason, for the log."""
    from ..backbones import declared_pooling

    pooling = declared_pooling(model, model_path)
    if pooling == "mean" and set(families) == {"classification"}:
        return "mean", "the checkpoint declares mean pooling, sentence-transformers 1_Pooling"
    if pooling == "mean":
        return "linear", "mean pooling is a classification head; these tasks use their own"
    return "linear", "the paper's head on [CLS]"


def build_head(kind: str, hidden_size: int, num_outputs: int, *, backbone=None,
               verbalizer: list[str] | None = None, dropout: float = 0.1) -> nn.Module:
    if kind == "linear" and getattr(backbone, "kind", None) == "glm":
        kind = "pooler"  # GLM's own fine-tuning head is the tanh-dense pooler on [CLS]
    if kind == "linear":
        return LinearHead(hidden_size, num_outputs, dropout)
    if kind == "mean":
        return MeanPoolHead(hidden_size, num_outputs, dropout)
    if kind == "pooler":
        return PoolerHead(hidden_size, num_outputs, dropout,
                          pretrained=getattr(backbone, "pretrained_pooler", None))
    if kind == "verbalizer":
        if not verbalizer or len(verbalizer) != num_outputs:
            raise UserError(f"--verbalizer needs {num_outputs} comma-separated label words "
                            f"(one per class), got {verbalizer}")
        return VerbalizerHead(verbalizer_token_ids(backbone, verbalizer))
    if kind == "token":
        return TokenHead(hidden_size, num_outputs, dropout)
    if kind == "span":
        return SpanHead(hidden_size)
    raise UserError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")


__all__ = ["HEADS", "LinearHead", "MeanPoolHead", "PoolerHead", "SpanHead", "TokenHead",
           "VerbalizerHead", "build_head", "resolve_auto_head", "verbalizer_token_ids"]
