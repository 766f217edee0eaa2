"""Evaluation and prediction shared by training, ``ptv2 eval`` and ``ptv2 predict``.

Family-agnostic: the task turns the head's outputs into per-feature results, decodes them into
one prediction per example (merging windows of long inputs) and scores them.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..tasks import Encoded, Task, make_loader


@torch.no_grad()
def predict(model, encoded: Encoded, task: Task, backbone, device, batch_size: int,
            show_progress: bool = False) -> list:
    """One prediction per example of ``encoded`` (in order). Every rank must call it under
    ZeRO-3 (the forward gathers parameters)."""
    was_training = model.training
    model.eval()
    results: list = []
    loader = make_loader(encoded, task, backbone, batch_size)
    for batch in tqdm(loader, desc="evaluating", disable=not show_progress, leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        results += task.batch_results(model(batch), batch)
    model.train(was_training)
    return task.decode(results, encoded)


def evaluate(model, encoded: Encoded, task: Task, backbone, device, batch_size: int,
             show_progress: bool = False) -> tuple[dict[str, float], list]:
    """(metrics, predictions) on a labelled split."""
    predictions = predict(model, encoded, task, backbone, device, batch_size, show_progress)
    return task.score(predictions, encoded.examples), predictions
