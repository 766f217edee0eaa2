"""Training on the DeepSpeed engine (also for one CPU process), evaluation and prediction."""
from .evaluation import evaluate, predict
from .loop import train

__all__ = ["evaluate", "predict", "train"]
