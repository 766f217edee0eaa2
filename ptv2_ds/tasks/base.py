"""The task-family interface: what the trainer, ``ptv2 eval``/``predict`` and artifacts need
from a task, so that none of them ever branches on a family's name.

A task is a row transform plus a feature transform (as in torchtune's datasets), a loss over
the head's outputs, and a decoder from outputs back to the user's units:

    examples  = task.read_file(path) | task.read_hub(split)    rows in the published format
    encoded   = task.encode(examples, backbone, max_len)       Encoded(features, meta)
    batch     = task.collate(features, backbone)               padded tensors
    outputs   = model(batch)                                    the head's output tensor
    loss      = task.loss(outputs, batch)                       a scalar
    results   = task.batch_results(outputs, batch)              CPU, one entry per feature
    preds     = task.decode(results, encoded)                   one prediction per example
    metrics   = task.score(preds, examples)                     {name: value}
    task.write_predictions(path, preds, examples)

Single records (mixed-task input to ``ptv2 predict`` with several artifacts and ``ptv2 serve``,
``serving/``) go through ``task.read_record(row, where, position)`` -> an example, and
``task.prediction_record(prediction, example)`` -> the JSON object of one prediction;
``task.record_fields()`` describes the record form.

Families: ``classification`` (one label per example, head on [CLS]), ``tagging`` (one tag per
word: NER, SRL; a head on every token), ``qa`` (extractive spans; start/end logits on every
token). Each lives in one module of this package and registers its task names in ``TASKS``.

A feature is what one row of a batch holds: ``input_ids`` plus the backbone's own keys and the
task's label keys (an int, a per-token list, start/end ints). Several features may come from
one example (long sentences and documents are windowed); ``Encoded.meta[i]`` keeps what
decoding feature ``i`` needs (its example index, token-to-word or token-to-character maps).
"""
from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from ..errors import UserError
from .readers import DataFormatError


@dataclass
class Encoded(Dataset):
    """A split as model inputs. ``features[i]`` goes to collate; ``meta[i]`` (same order) holds
    what ``decode`` needs for it, always including ``example`` (the index into ``examples``)."""

    examples: list
    features: list[dict]
    meta: list[dict]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


class BadRows:
    """What to do with a malformed row: raise its ``file:line`` error, or (``--skip-bad-rows``)
    count it, skip it and report the count once the file is read."""

    def __init__(self, skip: bool = False):
        self.skip = skip
        self.skipped: list[str] = []

    def __call__(self, message: str) -> None:
        if not self.skip:
            raise DataFormatError(message)
        self.skipped.append(message)

    def report(self, path) -> None:
        if self.skipped:
            print(f"[ptv2] warning: {path}: skipped {len(self.skipped)} malformed row(s) "
                  f"(--skip-bad-rows); first: {self.skipped[0]}", file=sys.stderr)


class Task:
    """Base class of the task families. Subclasses set the class attributes and implement the
    methods that raise ``NotImplementedError``."""

    name: str
    family: str                                   # "classification" | "tagging" | "qa"
    labels: tuple[str, ...] = ()                  # classes or tags; () for span QA
    metrics: tuple[str, ...] = ()                 # reported names; metrics[0] picks the best
    heads: dict[str, str] = {"linear": "linear"}  # accepted --head value -> head built
    hub: tuple[str, ...] | None = None            # datasets.load_dataset(*hub)
    hub_splits: dict[str, str] = {"train": "train", "dev": "validation"}
    pad_values: dict[str, int] = {}               # per-token keys and their pad value
    file_format: str = ""                         # what --train-file holds, for messages
    default_max_seq_len: int = 128                # --max-seq-len when not given
    prediction_file: str = "predictions.jsonl"    # name of OUT/test_<this> (suffix matters)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def num_outputs(self) -> int:
        """Width of the head's last dimension."""
        return len(self.labels)

    def head_kind(self, requested: str) -> str:
        """The head (see ``ptv2_ds.heads``) that ``--head requested`` means for this task."""
        if requested not in self.heads:
            raise UserError(f"--head {requested} does not apply to task {self.name} "
                            f"({self.family}); choose {', '.join(self.heads)}")
        return self.heads[requested]

    def options(self) -> dict:
        """JSON-able settings that rebuild this task for inference (stored in artifacts)."""
        return {}

    # ---- rows -------------------------------------------------------------------------
    def read_file(self, path: str | Path, *, require_labels: bool = True,
                  skip_bad_rows: bool = False) -> list:
        raise NotImplementedError

    def read_hub(self, split: str) -> list:
        raise NotImplementedError

    def fit_labels(self, train_examples: list) -> None:
        """Fix a label set read from the training data (tasks with fixed sets do nothing)."""

    def group_of(self, example) -> Any:
        """Examples of one group stay on one side of a carved dev split (QA: the article)."""
        return id(example)

    # ---- features and batches -----------------------------------------------------------
    def encode(self, examples: list, backbone, max_len: int, *,
               show_progress: bool = False) -> Encoded:
        raise NotImplementedError

    def collate(self, features: list[dict], backbone) -> dict[str, torch.Tensor]:
        return backbone.collate(features, self.pad_values)

    # ---- outputs ------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def batch_results(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> list:
        """Per-feature results on the CPU (what ``decode`` consumes), in batch order."""
        raise NotImplementedError

    def decode(self, results: list, encoded: Encoded) -> list:
        """One prediction per example of ``encoded.examples``, in order."""
        raise NotImplementedError

    def score(self, predictions: list, examples: list) -> dict[str, float]:
        raise NotImplementedError

    # ---- single records (mixed-task input: serving/) --------------------------------------
    def record_fields(self) -> dict[str, str]:
        """The fields of one input record of this task: name -> what it holds."""
        raise UserError(f"task {self.name} (family {self.family}) takes no single records")

    def read_record(self, row: dict, where: str, position: int) -> Any:
        """One example from a JSON object (no labels); ``where`` starts every error message
        (``file:line``, ``item 3``); ``position`` is the record's index."""
        raise UserError(f"task {self.name} (family {self.family}) takes no single records")

    def prediction_record(self, prediction, example) -> dict:
        """The JSON object of one prediction (what ``write_predictions`` writes per row where
        the family writes rows)."""
        raise NotImplementedError

    def write_predictions(self, path: str | Path, predictions: list, examples: list) -> None:
        raise NotImplementedError


# ---- registry --------------------------------------------------------------------------------
# name -> factory(**options) -> Task; filled by the family modules (see tasks/__init__.py)
TASKS: dict[str, Callable[..., Task]] = {}


def register(name: str, factory: Callable[..., Task]) -> None:
    TASKS[name] = factory


def build_task(name: str, **options) -> Task:
    """The task called ``name`` with run options (e.g. ``head``, ``template``, ``labels``,
    ``doc_stride``); options a family does not use are ignored by it."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name](**options)


def load_hub_split(task: Task, split: str, layout: str = ""):
    """``datasets.load_dataset(*task.hub, split=split)``, or a UserError saying to pass local
    files in the task's format (``layout`` spells it out) when the hub cannot be reached."""
    import datasets

    try:
        return datasets.load_dataset(*task.hub, split=split)
    except Exception as e:  # network, missing cache, renamed data set ...
        raise UserError(
            f"could not load {'/'.join(task.hub)} split {split!r} from the Hugging Face hub "
            f"({type(e).__name__}: {e}); offline, pass --train-file/--validation-file with "
            f"local {task.file_format} files{f' ({layout})' if layout else ''} instead") from None


# ---- splits (shared by every family) ---------------------------------------------------------
def load_splits(task: Task, train_file: str | None = None, validation_file: str | None = None,
                test_file: str | None = None, dev_fraction: float = 0.1, seed: int = 42,
                need_train: bool = True, skip_bad_rows: bool = False) -> dict[str, list]:
    """Train/dev(/test) examples from local files or, when no file is given, the hub.

    The label set of tasks that read it from data is fixed from train before dev/test are
    read (so a dev tag outside it is a ``file:line`` error). Without a validation file next to
    a local train file, a dev split of ``dev_fraction`` is carved out of train with ``seed``
    (the same rows every time), keeping each ``task.group_of`` group on one side."""
    def read(path, require_labels=True):
        return task.read_file(path, require_labels=require_labels, skip_bad_rows=skip_bad_rows)

    splits: dict[str, list] = {}
    if need_train:
        splits["train"] = read(train_file) if train_file else task.read_hub(
            task.hub_splits["train"])
        task.fit_labels(splits["train"])
    if validation_file:
        splits["dev"] = read(validation_file)
    elif train_file and need_train:
        splits["dev"], splits["train"] = carve_dev(task, splits["train"], dev_fraction, seed,
                                                   train_file)
    elif not train_file:
        splits["dev"] = task.read_hub(task.hub_splits["dev"])
    if test_file:
        splits["test"] = read(test_file, require_labels=False)
    return splits


def carve_dev(task: Task, rows: list, dev_fraction: float, seed: int, source: str
              ) -> tuple[list, list]:
    """(dev, train): whole groups, shuffled with ``seed``, until ``dev_fraction`` of the rows."""
    groups: dict[Any, list] = {}
    for row in rows:
        groups.setdefault(task.group_of(row), []).append(row)
    order = list(groups)
    random.Random(seed).shuffle(order)
    target = max(1, int(round(len(rows) * dev_fraction)))
    dev: list = []
    taken = 0
    for key in order:
        if len(dev) >= target:
            break
        dev += groups[key]
        taken += 1
    if taken >= len(order):
        raise UserError(f"{source}: too few rows ({len(rows)}) or groups ({len(order)}) to "
                        "carve a dev split; pass --validation-file (or raise --dev-fraction "
                        "below 1 and add rows)")
    train = [row for key in order[taken:] for row in groups[key]]
    return dev, train



class RecordError(UserError):
    """A single input record that does not fit its task's record form."""


def record_value(task: Task, row: dict, field: str, where: str) -> Any:
    """``row[field]``, or a RecordError naming ``where``, the field and the task's fields."""
    if field not in row or row[field] is None:
        raise RecordError(f"{where}: missing field {field!r} for task {task.name} (its "
                          f"fields: {', '.join(task.record_fields())})")
    return row[field]


def record_text(task: Task, row: dict, field: str, where: str) -> str:
    """A non-empty text field of a record."""
    value = record_value(task, row, field, where)
    if not isinstance(value, str):
        raise RecordError(f"{where}: field {field!r} of task {task.name} must be text, got "
                          f"{short_repr(value)}")
    if not value.strip():
        raise RecordError(f"{where}: field {field!r} of task {task.name} is empty")
    return value


def short_repr(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def write_jsonl(path: str | Path, records) -> None:
    """One JSON object per line, written to a temporary file and renamed into place, so a
    crash never leaves half a predictions file."""
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
