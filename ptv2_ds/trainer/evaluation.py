"""Evaluation and prediction loops shared by training, ``ptv2 eval`` and ``ptv2 predict``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..metrics import classification_metrics


@torch.no_grad()
def predict_logits(model, loader, device, show_progress: bool = False) -> tuple[torch.Tensor,
                                                                                torch.Tensor]:
    """Class logits [N, C] (fp32, CPU) and labels [N] for every batch of ``loader``, in order."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in tqdm(loader, desc="evaluating", disable=not show_progress, leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits.append(model(batch).float().cpu())
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model, loader, task, device, show_progress: bool = False) -> dict[str, float]:
    logits, labels = predict_logits(model, loader, device, show_progress)
    keep = labels != -100
    if not keep.any():
        raise ValueError("the evaluation data has no labels")
    predictions = logits.argmax(-1)[keep].tolist()
    return classification_metrics(task.metrics, predictions, labels[keep].tolist(),
                                  len(task.labels))


def write_predictions(path: str | Path, logits: torch.Tensor, labels: tuple[str, ...]) -> None:
    """One JSON line per row, in order: the predicted label string and the class scores.
    Written to a temporary file and renamed, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for row in logits:
            f.write(json.dumps({"label": labels[int(row.argmax())],
                                "scores": [round(x, 6) for x in row.tolist()]}) + "\n")
    os.replace(tmp, path)
