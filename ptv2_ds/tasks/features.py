"""Encoded splits -> padded batches."""
from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset

from .base import Task


def make_loader(encoded: Dataset, task: Task, backbone, batch_size: int, *,
                shuffle: bool = False, sampler=None, seed: int = 0) -> DataLoader:
    """Batches padded by the backbone and the task (``task.collate``). The loader draws its
    seeds from its own generator, not the global RNG, so that starting an epoch leaves
    dropout's random stream untouched."""
    return DataLoader(encoded, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, collate_fn=partial(task.collate, backbone=backbone),
                      generator=torch.Generator().manual_seed(seed))
