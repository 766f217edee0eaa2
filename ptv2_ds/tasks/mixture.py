"""Several tasks' training sets as one stream of batches (multi-task P-Tuning v2, MPT-2).

Each batch comes from one data set. An epoch is ``sum(b_i)`` batches (``b_i``: the batches of
task ``i``'s training set on one rank) and holds a fixed count ``c_i`` of batches of each task:

  proportional    c_i = b_i: every batch of every set once per epoch (p_i ~ n_i)
  temperature:T   c_i = the sum times p_i, p_i ~ n_i^(1/T) (n_i: the set's training inputs),
                  rounded by largest remainder; T = 1 is about proportional, larger T flattens
                  the mix towards uniform (small sets are seen more often)

The order of the tasks inside an epoch is a permutation drawn from ``(seed, epoch)`` alone, so
it is the same on every rank (all ranks train on the same task in a step: one head's
gradients, one reduction) and is recomputed, not stored, on resume. Each task reads its own set
as an endless stream of passes (pass ``k`` shuffled by its ``DistributedSampler`` with epoch
``k``); where a task's stream stands at any point of the schedule follows from the counts, so
``(epoch, batch_in_epoch)`` in a checkpoint resumes the exact batch sequence. With one task the
schedule is that task's loader, epoch by epoch, exactly as a single-task run reads it.

Also here: the ``--tasks`` / ``--task`` / ``TASK=PATH`` argument rules (``normalize_task_args``).
"""
from __future__ import annotations

import math
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np
from torch.utils.data import DistributedSampler

from ..errors import UserError
from .base import TASKS, Encoded, Task
from .features import make_loader

DEFAULT_TASK = "sst2"
FILE_OPTIONS = ("train_file", "validation_file", "test_file")


# ---- the schedule ---------------------------------------------------------------------------
def parse_sampling(spec: str) -> float | None:
    """``proportional`` -> None; ``temperature:T`` -> T (> 0)."""
    if spec == "proportional":
        return None
    kind, _, value = str(spec).partition(":")
    if kind == "temperature":
        try:
            t = float(value)
        except ValueError:
            t = float("nan")
        if t > 0 and math.isfinite(t):
            return t
    raise UserError(f"--task-sampling {spec!r}: expected proportional or temperature:T with a "
                    "number T > 0 (e.g. temperature:2)")


def epoch_counts(sizes: dict[str, int], batches: dict[str, int],
                 sampling: str = "proportional") -> dict[str, int]:
    """Batches of each task in one epoch (see the module docstring).

    ``sizes``: training inputs per task (n_i); ``batches``: batches per pass of each task's
    set on one rank (b_i). The counts always sum to ``sum(batches.values())``."""
    t = parse_sampling(sampling)
    if t is None:
        return dict(batches)
    total = sum(batches.values())
    weights = {n: float(sizes[n]) ** (1.0 / t) for n in sizes}
    norm = sum(weights.values())
    exact = {n: total * w / norm for n, w in weights.items()}
    counts = {n: int(math.floor(x)) for n, x in exact.items()}
    # largest remainder; ties go to the task named first (stable, the same on every rank)
    order = sorted(exact, key=lambda n: -(exact[n] - counts[n]))
    for n in order[: total - sum(counts.values())]:
        counts[n] += 1
    return counts


def epoch_schedule(counts: dict[str, int], seed: int, epoch: int) -> list[str]:
    """The task of each batch of ``epoch``: every task ``counts[task]`` times, in an order
    drawn from ``(seed, epoch)`` only (the same on every rank and after a resume)."""
    names = [n for n, c in counts.items() for _ in range(c)]
    if len(counts) == 1:
        return names
    order = np.random.default_rng([seed, epoch]).permutation(len(names))
    return [names[i] for i in order]


class Mixture:
    """The training batches of one or more tasks, one task per batch.

    Args:
        datasets: task name -> encoded training set (in the run's task order).
        tasks: task name -> its ``Task`` (``collate``).
        backbone, batch_size: as for ``make_loader``.
        world, rank, seed: each task's ``DistributedSampler`` (as a single-task run).
        sampling: ``proportional`` or ``temperature:T``.
    """

    def __init__(self, datasets: dict[str, Encoded], tasks: dict[str, Task], backbone,
                 batch_size: int, *, world: int = 1, rank: int = 0, seed: int = 42,
                 sampling: str = "proportional"):
        self.seed = seed
        self.samplers = {n: DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True,
                                               seed=seed) for n, ds in datasets.items()}
        self.loaders = {n: make_loader(ds, tasks[n], backbone, batch_size,
                                       sampler=self.samplers[n], seed=seed)
                        for n, ds in datasets.items()}
        self.batches = {n: len(loader) for n, loader in self.loaders.items()}
        empty = [n for n, b in self.batches.items() if b == 0]
        if empty:
            raise UserError(f"task {empty[0]} has no training examples")
        self.sizes = {n: len(ds) for n, ds in datasets.items()}
        self.counts = epoch_counts(self.sizes, self.batches, sampling)

    def __len__(self) -> int:
        """Batches per epoch (the sum over the tasks' sets)."""
        return sum(self.counts.values())

    def schedule(self, epoch: int) -> list[str]:
        return epoch_schedule(self.counts, self.seed, epoch)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, str, dict]]:
        """``(index in epoch, task, batch)`` for batches ``start``, ``start + 1``, ... of
        ``epoch`` (``start`` > 0 resumes inside the epoch)."""
        schedule = self.schedule(epoch)
        streams: dict[str, Iterator[dict]] = {}
        for index in range(start, len(schedule)):
            name = schedule[index]
            if name not in streams:
                done = epoch * self.counts[name] + schedule[:index].count(name)
                streams[name] = self._stream(name, done)
            yield index, name, next(streams[name])

    def _stream(self, name: str, done: int) -> Iterator[dict]:
        """Task ``name``'s batches from its ``done``-th on, pass after pass."""
        per_pass = self.batches[name]
        passes, skip = divmod(done, per_pass)
        while True:
            self.samplers[name].set_epoch(passes)
            yield from islice(iter(self.loaders[name]), skip, None)
            passes, skip = passes + 1, 0


# ---- arguments ------------------------------------------------------------------------------
def normalize_task_args(args) -> None:
    """Check and normalise, in place, how a TrainArgs names its tasks and files.

    ``--tasks a,b`` (or a YAML list) becomes ``args.tasks == ["a", "b"]`` with ``args.task``
    None, and each file option a ``{task: path}`` dict from repeated ``TASK=PATH`` flags or a
    YAML mapping. A single task (``--task a``, or ``--tasks a``) keeps ``args.tasks`` None and
    plain paths (``a=PATH`` is accepted and stripped), so a single-task run's configuration is
    what it always was. Raises UserError on conflicting or unknown names."""
    tasks = _task_list(args.tasks)
    if tasks is not None and args.task is not None:
        raise UserError(f"--task {args.task} and --tasks {','.join(tasks)} are both given: use "
                        "--task for one task or --tasks for several")
    if tasks is not None and len(tasks) == 1:
        args.task, tasks = tasks[0], None
    args.tasks = tasks
    if tasks is None:
        args.task = args.task or DEFAULT_TASK
    parse_sampling(args.task_sampling)
    for option in FILE_OPTIONS:
        value = getattr(args, option)
        if tasks is None:
            setattr(args, option, _single_file(value, args.task, option))
        else:
            setattr(args, option, _task_files(value, tasks, option))


def _task_list(value) -> list[str] | None:
    if value is None:
        return None
    names = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise UserError("--tasks is empty; give task names separated by commas")
    for n in names:
        if n not in TASKS:
            raise UserError(f"--tasks: unknown task {n!r}; choose from {', '.join(TASKS)}")
        if names.count(n) > 1:
            raise UserError(f"--tasks names {n} twice")
    return names


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _split_spec(spec: str) -> tuple[str | None, str]:
    """``TASK=PATH`` -> (TASK, PATH) when TASK is a registered task name and ``spec`` is not
    itself an existing file; else (None, spec)."""
    name, sep, path = str(spec).partition("=")
    if sep and name in TASKS and not Path(spec).exists():
        return name, path
    return None, str(spec)


def _entries(value, option: str) -> list[tuple[str | None, str]]:
    if isinstance(value, dict):
        return [(str(k), str(v)) for k, v in value.items()]
    specs = value if isinstance(value, (list, tuple)) else [value]
    return [_split_spec(s) for s in specs]


def _single_file(value, task: str, option: str) -> str | None:
    if value is None:
        return None
    entries = _entries(value, option)
    if len(entries) > 1:
        raise UserError(f"{_flag(option)} is given {len(entries)} times, but this run trains "
                        f"one task ({task}); name several with --tasks")
    name, path = entries[0]
    if name is not None and name != task:
        raise UserError(f"{_flag(option)} {name}={path} names task {name}, but this run trains "
                        f"--task {task}")
    return path


def _task_files(value, tasks: list[str], option: str) -> dict[str, str] | None:
    if value is None:
        return None
    out: dict[str, str] = {}
    for name, path in _entries(value, option):
        if name is None:
            raise UserError(f"{_flag(option)} {path}: with --tasks give TASK=PATH (one flag per "
                            f"task, TASK one of {', '.join(tasks)})")
        if name not in tasks:
            raise UserError(f"{_flag(option)} {name}={path} names task {name}, which is not in "
                            f"--tasks {','.join(tasks)}")
        if name in out:
            raise UserError(f"{_flag(option)} is given twice for task {name} ({out[name]}, "
                            f"{path})")
        out[name] = path
    return out


def task_files(args, name: str) -> tuple[str | None, str | None, str | None]:
    """(train, validation, test) file of task ``name`` (None: not given)."""
    def one(value):
        return value.get(name) if isinstance(value, dict) else value
    return tuple(one(getattr(args, o)) for o in FILE_OPTIONS)


def check_task_data(task: Task, train_file: str | None, multi: bool) -> None:
    """A task of a --tasks run without a train file must have hub data."""
    if multi and train_file is None and task.hub is None:
        raise UserError(f"task {task.name} has no Hugging Face hub data set: give "
                        f"--train-file {task.name}=PATH (and --validation-file "
                        f"{task.name}=PATH) with {task.file_format} files")


def stack_metrics(per_task: dict[str, dict[str, float]], main: dict[str, str]
                  ) -> dict[str, float]:
    """``{"mean": mean of each task's main metric, "task/metric": value, ...}``."""
    mean = float(sum(per_task[n][main[n]] for n in per_task) / len(per_task))
    return {"mean": mean, **{f"{n}/{k}": v for n, m in per_task.items() for k, v in m.items()}}


__all__ = ["Mixture", "epoch_counts", "epoch_schedule", "normalize_task_args", "parse_sampling",
           "stack_metrics", "task_files"]
