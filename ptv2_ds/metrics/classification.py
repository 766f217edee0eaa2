"""Classification metrics: accuracy and macro-F1 (scikit-learn's definition)."""
from __future__ import annotations

from typing import Sequence


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    if not references:
        raise ValueError("no examples to score")
    return sum(int(p == r) for p, r in zip(predictions, references)) / len(references)


def macro_f1(predictions: Sequence[int], references: Sequence[int],
             num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over all classes (absent classes score 0)."""
    from sklearn.metrics import f1_score

    labels = list(range(num_classes)) if num_classes else None
    return float(f1_score(references, predictions, labels=labels, average="macro",
                          zero_division=0))


def classification_metrics(names: Sequence[str], predictions: Sequence[int],
                           references: Sequence[int], num_classes: int) -> dict[str, float]:
    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = accuracy(predictions, references)
        elif name == "macro_f1":
            out[name] = macro_f1(predictions, references, num_classes)
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out
