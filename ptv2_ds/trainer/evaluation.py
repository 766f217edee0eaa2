"""Evaluation and prediction shared by training, ``ptv2 eval`` and ``ptv2 predict``.

Family-agnostic: the task turns the head's outputs into per-feature results, decodes them into
one prediction per example (merging windows of long inputs) and scores them.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Subset
from tqdm.auto import tqdm

from ..tasks import Encoded, Task, make_loader


@torch.no_grad()
def predict(model, encoded: Encoded, task: Task, backbone, device, batch_size: int,
            show_progress: bool = False, head: str | None = None) -> list:
    """One prediction per example of ``encoded`` (in order). Features run in batches sorted by
    length (less padding), their results put back in order before decoding.

    With several ranks (a process group is up) each rank runs an equal contiguous share of the
    features (the last share padded with repeats, so every rank runs the same number of
    forwards, which ZeRO-3 needs) and the results are gathered on every rank before decoding:
    every rank must call this. ``head``: the task whose head a multi-task model applies."""
    was_training = model.training
    model.eval()
    rank, world = _rank_and_world()
    per_rank = math.ceil(len(encoded) / world)
    mine = list(range(rank * per_rank, min(len(encoded), (rank + 1) * per_rank)))
    real = len(mine)
    mine += [mine[-1] if mine else 0] * (per_rank - real)
    # batches of similar lengths pad less; the results go back to the share's order after
    order = sorted(range(len(mine)), key=lambda i: len(encoded.features[mine[i]]["input_ids"]))
    results: list = [None] * len(mine)
    done = 0
    loader = make_loader(Subset(encoded, [mine[i] for i in order]), task, backbone, batch_size)
    for batch in tqdm(loader, desc="evaluating", disable=not show_progress, leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = model(batch) if head is None else model(batch, task=head)
        for result in task.batch_results(outputs, batch):
            results[order[done]] = result
            done += 1
    results = results[:real]
    if world > 1:
        shares: list = [None] * world
        torch.distributed.all_gather_object(shares, results)
        results = [r for share in shares for r in share]
    model.train(was_training)
    return task.decode(results, encoded)


def _rank_and_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def evaluate(model, encoded: Encoded, task: Task, backbone, device, batch_size: int,
             show_progress: bool = False, head: str | None = None
             ) -> tuple[dict[str, float], list]:
    """(metrics, predictions) on a labelled split."""
    predictions = predict(model, encoded, task, backbone, device, batch_size, show_progress,
                          head)
    return task.score(predictions, encoded.examples), predictions
