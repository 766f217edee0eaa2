"""Training on the DeepSpeed engine (also for one CPU process), evaluation and prediction."""
from .evaluation import evaluate, predict_logits, write_predictions
from .loop import train

__all__ = ["evaluate", "predict_logits", "train", "write_predictions"]
