"""Span F1 for tagging tasks (NER, SRL), computed by seqeval.

Spans are read from BIO/IOB2 tag sequences by seqeval's default mode, which is compatible with
the CoNLL ``conlleval`` script (an ``I-X`` after ``O`` or after another type opens a new span).
Precision, recall and F1 are micro-averaged over all spans of all sentences; every value is a
fraction in [0, 1], exactly what ``seqeval.metrics`` returns (no division by zero warnings:
an undefined value counts as 0, which is also seqeval's default).

NER (``ner_scores``): ``precision``, ``recall``, ``f1`` and, per entity type, ``f1_<TYPE>``.

SRL (``srl_scores``): ``f1``/``precision``/``recall`` over the argument spans, without the
predicate span ``V``, the way the official CoNLL-2005 ``srl-eval.pl`` counts them; and
``f1_with_v``/``precision_with_v``/``recall_with_v`` over every span including ``V``, which is
what the P-Tuning v2 code reports (seqeval on the raw tags). The ``V`` spans are removed by
rewriting ``B-V``/``I-V`` to ``O`` in both gold and prediction; under conlleval's chunking rules
a ``V`` token ends the span before it and starts none after it exactly as an ``O`` does, so this
removes the ``V`` spans and leaves every other span as it was (tested against
``seqeval.metrics.sequence_labeling.get_entities``). Continuation types such as ``C-V`` are
other types and stay.
"""
from __future__ import annotations

from typing import Sequence

Tags = Sequence[Sequence[str]]


def _check(gold: Tags, pred: Tags) -> tuple[list[list[str]], list[list[str]]]:
    if len(gold) != len(pred):
        raise ValueError(f"{len(pred)} predicted sentences for {len(gold)} gold sentences")
    if not gold:
        raise ValueError("no sentences to score")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(p)} predicted tags for {len(g)} words")
    return [list(g) for g in gold], [list(p) for p in pred]


def span_scores(gold: Tags, pred: Tags, *, suffix: str = "",
                per_type: bool = False) -> dict[str, float]:
    """Micro precision/recall/F1 over spans (keys ``precision<suffix>`` ...), plus
    ``f1_<TYPE><suffix>`` for every type seen in gold or prediction when ``per_type``."""
    from seqeval.metrics import (classification_report, f1_score, precision_score,
                                 recall_score)

    gold, pred = _check(gold, pred)
    out = {f"precision{suffix}": float(precision_score(gold, pred, zero_division=0)),
           f"recall{suffix}": float(recall_score(gold, pred, zero_division=0)),
           f"f1{suffix}": float(f1_score(gold, pred, zero_division=0))}
    if per_type:
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        for name, row in report.items():
            if not name.endswith(" avg"):
                out[f"f1_{name}{suffix}"] = float(row["f1-score"])
    return out


def drop_types(sequences: Tags, types: set[str]) -> list[list[str]]:
    """The tag sequences with every ``B-T``/``I-T`` (T in ``types``) rewritten to ``O``."""
    def keep(tag: str) -> bool:
        return not (len(tag) > 2 and tag[1] == "-" and tag[2:] in types)
    return [[t if keep(t) else "O" for t in seq] for seq in sequences]


def ner_scores(gold: Tags, pred: Tags) -> dict[str, float]:
    return span_scores(gold, pred, per_type=True)


def srl_scores(gold: Tags, pred: Tags, per_type: bool = False) -> dict[str, float]:
    gold, pred = _check(gold, pred)
    out = span_scores(drop_types(gold, {"V"}), drop_types(pred, {"V"}), per_type=per_type)
    out.update(span_scores(gold, pred, suffix="_with_v"))
    return out
