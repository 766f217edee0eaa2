"""Evaluation metrics, one module per family: ``classification`` (accuracy, macro-F1),
``spans`` (seqeval entity/argument span scores), ``squad`` (the official SQuAD EM/F1)."""
from .classification import accuracy, classification_metrics, macro_f1

__all__ = ["accuracy", "classification_metrics", "macro_f1"]
