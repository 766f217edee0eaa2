"""Sentence(-pair) classification: SST-2, MNLI, RTE, BoolQ, CB.

One label per example, scored by a head on [CLS] (``linear`` / ``pooler``) or by the
backbone's LM head at a cloze ``[MASK]`` (``verbalizer``). Each task loads from its Hugging
Face hub data set when online and from local files in the published formats (GLUE TSV,
SuperGLUE JSONL) otherwise. Labels are kept as the strings the published files use; their
order matches the hub data sets' integer labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UserError
from ..metrics import classification_metrics
from .base import (BadRows, Encoded, Task, load_hub_split, record_text, register,
                   write_jsonl)
from .readers import DataFormatError, read_jsonl, read_tsv


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: str | None   # None for unlabeled (test) rows


@dataclass(frozen=True)
class Spec:
    """What distinguishes one classification data set from another."""

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


SPECS: dict[str, Spec] = {
    "sst2": Spec(("0", "1"), ("sentence", None), "label", "tsv", ("glue", "sst2"),
                 "validation", ("accuracy",), "{a} It was {mask} .", ("terrible", "great")),
    "mnli": Spec(("entailment", "neutral", "contradiction"), ("sentence1", "sentence2"),
                 "gold_label", "tsv", ("glue", "mnli"), "validation_matched", ("accuracy",),
                 "{a} ? {mask} , {b}", ("yes", "maybe", "no"),
                 hub_fields=("premise", "hypothesis")),
    "rte": Spec(("entailment", "not_entailment"), ("premise", "hypothesis"), "label", "jsonl",
                ("super_glue", "rte"), "validation", ("accuracy",), "{a} ? {mask} , {b}",
                ("yes", "no"), ("Yes", "No")),
    "boolq": Spec(("false", "true"), ("question", "passage"), "label", "jsonl",
                  ("super_glue", "boolq"), "validation", ("accuracy",), "{b} . {a} ? {mask} .",
                  ("no", "yes"), ("No", "Yes")),
    "cb": Spec(("entailment", "contradiction", "neutral"), ("premise", "hypothesis"), "label",
               "jsonl", ("super_glue", "cb"), "validation", ("accuracy", "macro_f1"),
               "{a} ? {mask} , {b}", ("yes", "no", "maybe"), ("Yes", "No", "Maybe")),
}


class ClassificationTask(Task):
    """One of ``SPECS``, with the run's head choice (``head``, and for ``verbalizer`` the
    label words and cloze template; defaults are the task's)."""

    family = "classification"
    heads = {"linear": "linear", "mean": "mean", "pooler": "pooler", "verbalizer": "verbalizer"}

    def __init__(self, name: str, head: str = "linear", template: str | None = None,
                 verbalizer: str | list[str] | None = None, **_ignored):
        spec = SPECS[name]
        self.name, self.spec = name, spec
        self.labels, self.metrics = spec.labels, spec.metrics
        self.hub = spec.hub
        self.hub_splits = {"train": "train", "dev": spec.hub_validation}
        self.file_format = "GLUE TSV" if spec.file_format == "tsv" else "SuperGLUE JSONL"
        self.head = head
        self.template = (template or spec.cloze_template) if head == "verbalizer" else None
        if self.template is not None:  # checked here, before any model is loaded
            from ..backbones.layout import split_template

            if "{b}" in split_template(self.template) and spec.fields[1] is None:
                raise UserError(f"cloze template {self.template!r} has a {{b}} slot but task "
                                f"{name} has only one text; use {{a}} and {{mask}} only "
                                "(--template)")
        if isinstance(verbalizer, str):
            verbalizer = [w.strip() for w in verbalizer.split(",")]
        self.verbalizer = list(verbalizer) if verbalizer else None

    def options(self) -> dict:
        return {"head": self.head, "template": self.template, "verbalizer": self.verbalizer}

    def verbalizer_words(self, backbone) -> list[str]:
        """Label words for ``--head verbalizer``: the user's, else the task's (GLM's own)."""
        if self.verbalizer:
            return self.verbalizer
        if backbone.kind == "glm" and self.spec.glm_verbalizer:
            return list(self.spec.glm_verbalizer)
        return list(self.spec.verbalizer)

    # ---- rows -------------------------------------------------------------------------
    def read_file(self, path, *, require_labels=True, skip_bad_rows=False) -> list[Example]:
        spec = self.spec
        reader = read_tsv if spec.file_format == "tsv" else read_jsonl
        bad = BadRows(skip_bad_rows)
        examples = []
        for line, row in reader(path):
            where = f"{path}:{line}"
            texts, problem = [], None
            for field in spec.fields:
                if field is None:
                    texts.append(None)
                elif field not in row or row[field] is None:
                    problem = (f"{where}: missing field {field!r} "
                               f"(found {', '.join(map(str, row))})")
                elif not isinstance(row[field], str):
                    problem = f"{where}: field {field!r} must be text, got {row[field]!r}"
                else:
                    texts.append(row[field])
            if problem is None and not any(t.strip() for t in texts if t is not None):
                problem = (f"{where}: empty text in {' and '.join(f for f in spec.fields if f)}"
                           " (a row needs words to classify)")
            label = row.get(spec.label_field)
            if problem is None and (label is None or label == ""):
                if require_labels:
                    problem = f"{where}: missing label field {spec.label_field!r}"
                label = None
            elif problem is None:
                label = _label_text(label)
                if label not in self.labels:
                    problem = (f"{where}: label {label!r} is not one of {list(self.labels)} "
                               f"for task {self.name}")
            if problem is not None:
                bad(problem)
                continue
            examples.append(Example(texts[0], texts[1], label))
        bad.report(path)
        if not examples:
            raise DataFormatError(f"{path}: no examples")
        return examples

    def read_hub(self, split: str) -> list[Example]:
        data = load_hub_split(self, split)
        field_a, field_b = self.spec.hub_fields or self.spec.fields
        out = []
        for row in data:
            label = row.get("label", -1)
            out.append(Example(row[field_a], row[field_b] if field_b else None,
                               self.labels[label] if label is not None and label >= 0 else None))
        return out

    # ---- features -----------------------------------------------------------------------
    def encode(self, examples, backbone, max_len, *, show_progress=False) -> Encoded:
        """Tokenize and lay out every example for ``backbone``; labels become class indices
        (-100 for unlabeled rows)."""
        features = []
        for ex in tqdm(examples, desc="tokenizing", disable=not show_progress, leave=False,
                       mininterval=1.0):
            ids_a = backbone.encode_text(ex.text_a)
            ids_b = backbone.encode_text(ex.text_b) if ex.text_b is not None else None
            f = backbone.encode(ids_a, ids_b, max_len, self.template)
            f["labels"] = self.labels.index(ex.label) if ex.label is not None else -100
            features.append(f)
        return Encoded(examples, features, [{"example": i} for i in range(len(examples))])

    # ---- outputs ------------------------------------------------------------------------
    def loss(self, outputs, batch):
        return F.cross_entropy(outputs.float(), batch["labels"])  # outputs [B, C]

    def batch_results(self, outputs, batch):
        return list(outputs.float().cpu().numpy())  # one [C] row per example

    def decode(self, results, encoded) -> list[dict]:
        return [{"label": self.labels[int(np.argmax(row))], "scores": row.tolist()}
                for row in results]

    def score(self, predictions, examples) -> dict[str, float]:
        pairs = [(self.labels.index(p["label"]), self.labels.index(ex.label))
                 for p, ex in zip(predictions, examples) if ex.label is not None]
        if not pairs:
            raise ValueError("the evaluation data has no labels")
        predicted, gold = zip(*pairs)
        return classification_metrics(self.metrics, predicted, gold, len(self.labels))

    def write_predictions(self, path, predictions, examples) -> None:
        """One JSON line per row, in order: the predicted label string and the class scores.
        Written to a temporary file and renamed, so a crash never leaves half a file."""
        write_jsonl(path, (self.prediction_record(p, ex) for p, ex in zip(predictions, examples)))

    # ---- single records: the fields of the task's published rows ------------------------
    def record_fields(self) -> dict[str, str]:
        return {f: "text" for f in self.spec.fields if f is not None}

    def read_record(self, row, where, position) -> Example:
        a, b = (record_text(self, row, f, where) if f is not None else None
                for f in self.spec.fields)
        return Example(a, b, None)

    def prediction_record(self, prediction, example) -> dict:
        return {"label": prediction["label"],
                "scores": [round(float(x), 6) for x in prediction["scores"]]}


def _label_text(value) -> str:
    if isinstance(value, bool):  # SuperGLUE BoolQ writes true/false as JSON booleans
        return "true" if value else "false"
    return str(value).strip()


for _name in SPECS:
    register(_name, lambda _n=_name, **options: ClassificationTask(_n, **options))
