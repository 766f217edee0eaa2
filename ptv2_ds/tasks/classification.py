"""Sentence(-pair) classification tasks: SST-2, MNLI, RTE, BoolQ, CB.

Each task loads from its Hugging Face hub data set when online and from local files in the
published formats (GLUE TSV, SuperGLUE JSONL) otherwise. Labels are kept as the strings the
published files use; their order matches the hub data sets' integer labels.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .readers import DataFormatError, read_jsonl, read_tsv


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: str | None   # None for unlabeled (test) rows


@dataclass(frozen=True)
class ClassificationTask:
    name: str
    labels: tuple[str, ...]
    fields: tuple[str, str | None]   # column/field names of text a and text b
    label_field: str
    file_format: str                 # "tsv" (GLUE) or "jsonl" (SuperGLUE)
    hub: tuple[str, str]             # load_dataset(path, name)
    hub_validation: str              # the split evaluated as "dev"
    metrics: tuple[str, ...]
    cloze_template: str              # for --head verbalizer; {a}, {b}, {mask}
    verbalizer: tuple[str, ...]      # one label word per class, same order as labels
    glm_verbalizer: tuple[str, ...] | None = None
    hub_fields: tuple[str, str | None] | None = None  # when the hub names them otherwise

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    def label_index(self, label: str) -> int:
        return self.labels.index(label)


TASKS: dict[str, ClassificationTask] = {t.name: t for t in [
    ClassificationTask(
        "sst2", ("0", "1"), ("sentence", None), "label", "tsv", ("glue", "sst2"),
        "validation", ("accuracy",), "{a} It was {mask} .", ("terrible", "great")),
    ClassificationTask(
        "mnli", ("entailment", "neutral", "contradiction"), ("sentence1", "sentence2"),
        "gold_label", "tsv", ("glue", "mnli"), "validation_matched", ("accuracy",),
        "{a} ? {mask} , {b}", ("yes", "maybe", "no"), hub_fields=("premise", "hypothesis")),
    ClassificationTask(
        "rte", ("entailment", "not_entailment"), ("premise", "hypothesis"), "label", "jsonl",
        ("super_glue", "rte"), "validation", ("accuracy",), "{a} ? {mask} , {b}",
        ("yes", "no"), ("Yes", "No")),
    ClassificationTask(
        "boolq", ("false", "true"), ("question", "passage"), "label", "jsonl",
        ("super_glue", "boolq"), "validation", ("accuracy",), "{b} . {a} ? {mask} .",
        ("no", "yes"), ("No", "Yes")),
    ClassificationTask(
        "cb", ("entailment", "contradiction", "neutral"), ("premise", "hypothesis"), "label",
        "jsonl", ("super_glue", "cb"), "validation", ("accuracy", "macro_f1"),
        "{a} ? {mask} , {b}", ("yes", "no", "maybe"), ("Yes", "No", "Maybe")),
]}


def get_task(name: str) -> ClassificationTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def read_task_file(task: ClassificationTask, path: str | Path,
                   require_labels: bool = True) -> list[Example]:
    """Read a local file in the task's published format into examples."""
    reader = read_tsv if task.file_format == "tsv" else read_jsonl
    examples = []
    field_a, field_b = task.fields
    for line, row in reader(path):
        texts = []
        for field in (field_a, field_b):
            if field is None:
                texts.append(None)
                continue
            if field not in row:
                raise DataFormatError(f"{path}:{line}: missing field {field!r} "
                                      f"(found {', '.join(map(str, row))})")
            if not isinstance(row[field], str):
                raise DataFormatError(f"{path}:{line}: field {field!r} must be text")
            texts.append(row[field])
        label = row.get(task.label_field)
        if label is None or label == "":
            if require_labels:
                raise DataFormatError(f"{path}:{line}: missing label field {task.label_field!r}")
            label = None
        else:
            label = _label_text(label)
            if label not in task.labels:
                raise DataFormatError(f"{path}:{line}: label {label!r} is not one of "
                                      f"{list(task.labels)} for task {task.name}")
        examples.append(Example(texts[0], texts[1], label))
    if not examples:
        raise DataFormatError(f"{path}: no examples")
    return examples


def _label_text(value) -> str:
    if isinstance(value, bool):  # SuperGLUE BoolQ writes true/false as JSON booleans
        return "true" if value else "false"
    return str(value).strip()


def read_hub_split(task: ClassificationTask, split: str) -> list[Example]:
    """Load a split from the Hugging Face hub (needs network or a local datasets cache)."""
    import datasets

    try:
        data = datasets.load_dataset(*task.hub, split=split)
    except Exception as e:  # network, missing cache, renamed data set ...
        raise RuntimeError(
            f"could not load {'/'.join(task.hub)} split {split!r} from the Hugging Face hub "
            f"({type(e).__name__}: {e}); offline, pass --train-file/--validation-file with "
            f"local {task.file_format.upper()} files instead") from None
    field_a, field_b = task.hub_fields or task.fields
    out = []
    for row in data:
        label = row.get("label", -1)
        out.append(Example(row[field_a], row[field_b] if field_b else None,
                           task.labels[label] if label is not None and label >= 0 else None))
    return out


def load_splits(task: ClassificationTask, train_file: str | None = None,
                validation_file: str | None = None, test_file: str | None = None,
                dev_fraction: float = 0.1, seed: int = 42,
                need_train: bool = True) -> dict[str, list[Example]]:
    """Train/dev(/test) examples from local files or, when no file is given, the hub.

    Without a validation file next to a local train file, a dev split of ``dev_fraction``
    is carved out of train with ``seed`` (the same rows every time)."""
    splits: dict[str, list[Example]] = {}
    if need_train:
        splits["train"] = (read_task_file(task, train_file) if train_file
                           else read_hub_split(task, "train"))
    if validation_file:
        splits["dev"] = read_task_file(task, validation_file)
    elif train_file and need_train:
        rows = list(splits["train"])
        random.Random(seed).shuffle(rows)
        n_dev = max(1, int(round(len(rows) * dev_fraction)))
        if n_dev >= len(rows):
            raise ValueError(f"{train_file}: too few rows ({len(rows)}) to carve a dev split")
        splits["dev"], splits["train"] = rows[:n_dev], rows[n_dev:]
    elif not train_file:
        splits["dev"] = read_hub_split(task, task.hub_validation)
    if test_file:
        splits["test"] = read_task_file(task, test_file, require_labels=False)
    return splits
