"""One JSON object <-> one example / one prediction, for mixed-task input (``ptv2 predict``
with several artifacts, ``ptv2 serve``).

The task families read whole files in their published formats (GLUE TSV, CoNLL columns, SQuAD
JSON); a mixed-task request holds single records instead, so each family gets a record form
here, mirroring the rows of its prediction output:

  classification  the fields of the task's published rows: ``{"sentence"}`` (sst2),
                  ``{"premise", "hypothesis"}`` (rte, cb), ``{"question", "passage"}`` (boolq),
                  ``{"sentence1", "sentence2"}`` (mnli)
                  -> ``{"label", "scores"}``
  tagging         ``{"tokens": [words]}``; SRL (conll05/conll12) also ``{"predicate": i}``
                  (0-based word index)  -> ``{"tokens", "tags"}`` (SRL: ``+ "predicate"``)
  qa              ``{"question", "context"}``, optional ``"id"`` (default: the record's
                  position) and ``"title"``  -> ``{"id", "answer"}`` (+ ``"null_score_diff"``
                  for SQuAD 2.0)

Every problem is a ``RecordError`` whose message starts with where the record came from
(``file:line`` or ``item 3``) and names the field. The forms are keyed by ``Task.family`` in
one table (``FORMS``) so the batching and prediction code never looks at family names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from ..tasks import Task


class RecordError(UserError):
    """A mixed-task input record that does not fit its task's record form."""


@dataclass(frozen=True)
class RecordForm:
    """How one family reads a record and writes a prediction."""

    fields: Callable[[Task], dict[str, str]]          # field -> description (for /tasks, docs)
    parse: Callable[[Task, dict, str, int], Any]       # (task, row, where, position) -> example
    render: Callable[[Task, Any, Any], dict]           # (task, prediction, example) -> JSON


# ---- classification ------------------------------------------------------------------------
def _classification_fields(task) -> dict[str, str]:
    return {f: "text" for f in task.spec.fields if f is not None}


def _classification_parse(task, row: dict, where: str, position: int):
    from ..tasks.classification import Example

    texts = []
    for field in task.spec.fields:
        if field is None:
            texts.append(None)
            continue
        texts.append(_text(row, field, where, task))
    return Example(texts[0], texts[1], None)


def _classification_render(task, prediction, example) -> dict:
    return {"label": prediction["label"],
            "scores": [round(float(x), 6) for x in prediction["scores"]]}


# ---- tagging --------------------------------------------------------------------------------
def _is_srl(task) -> bool:
    from ..tasks.tagging import SrlTask
    return isinstance(task, SrlTask)


def _tagging_fields(task) -> dict[str, str]:
    out = {"tokens": "list of words"}
    if _is_srl(task):
        out["predicate"] = "0-based index of the predicate word"
    return out


def _tagging_parse(task, row: dict, where: str, position: int):
    from ..tasks.tagging import TaggedSentence

    tokens = _require(row, "tokens", where, task)
    if (not isinstance(tokens, list) or not tokens
            or not all(isinstance(t, str) and t.strip() and not any(c.isspace() for c in t)
                       for t in tokens)):
        raise RecordError(f"{where}: field 'tokens' of task {task.name} must be a non-empty "
                          f"list of words (strings without spaces), got {_short(tokens)}")
    predicate = None
    if _is_srl(task):
        predicate = _require(row, "predicate", where, task)
        if isinstance(predicate, bool) or not isinstance(predicate, int) \
                or not 0 <= predicate < len(tokens):
            raise RecordError(f"{where}: field 'predicate' of task {task.name} must be a word "
                              f"index in 0..{len(tokens) - 1}, got {predicate!r}")
    return TaggedSentence(list(tokens), None, predicate)


def _tagging_render(task, prediction, example) -> dict:
    return task._prediction_row(prediction, example)


# ---- qa -------------------------------------------------------------------------------------
def _qa_fields(task) -> dict[str, str]:
    return {"question": "text", "context": "text", "id": "optional identifier",
            "title": "optional"}


def _qa_parse(task, row: dict, where: str, position: int):
    from ..tasks.qa import QAExample

    question, context = _text(row, "question", where, task), _text(row, "context", where, task)
    qid = row.get("id", str(position))
    if not isinstance(qid, (str, int)) or isinstance(qid, bool):
        raise RecordError(f"{where}: field 'id' must be a string, got {_short(qid)}")
    title = row.get("title") or ""
    return QAExample(str(qid), str(title), context, question, [], None)


def _qa_render(task, prediction, example) -> dict:
    out = {"id": example.id, "answer": prediction.text}
    if task.version2:
        diff = prediction.null_score_diff
        out["null_score_diff"] = diff if math.isfinite(diff) else None
    return out


FORMS: dict[str, RecordForm] = {
    "classification": RecordForm(_classification_fields, _classification_parse,
                                 _classification_render),
    "tagging": RecordForm(_tagging_fields, _tagging_parse, _tagging_render),
    "qa": RecordForm(_qa_fields, _qa_parse, _qa_render),
}


def form_of(task: Task) -> RecordForm:
    if task.family not in FORMS:
        raise UserError(f"task {task.name} (family {task.family}) has no record form for "
                        "mixed-task input")
    return FORMS[task.family]


# ---- helpers --------------------------------------------------------------------------------
def _require(row: dict, field: str, where: str, task) -> Any:
    if field not in row or row[field] is None:
        fields = ", ".join(form_of(task).fields(task))
        raise RecordError(f"{where}: missing field {field!r} for task {task.name} (its "
                          f"fields: {fields})")
    return row[field]


def _text(row: dict, field: str, where: str, task) -> str:
    value = _require(row, field, where, task)
    if not isinstance(value, str):
        raise RecordError(f"{where}: field {field!r} of task {task.name} must be text, got "
                          f"{_short(value)}")
    if not value.strip():
        raise RecordError(f"{where}: field {field!r} of task {task.name} is empty")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_record(tasks: dict[str, Task], row, where: str, position: int = 0) -> tuple[str, Any]:
    """(task name, example) of one record ``{"task": NAME, ...fields}``; ``tasks``: the served
    tasks by name. ``position`` (the record's index) is the default QA id."""
    if not isinstance(row, dict):
        raise RecordError(f"{where}: expected a JSON object with a 'task' field, found "
                          f"{type(row).__name__}")
    if "task" not in row:
        raise RecordError(f"{where}: missing field 'task' (loaded tasks: {', '.join(tasks)})")
    name = row["task"]
    if not isinstance(name, str) or name not in tasks:
        raise RecordError(f"{where}: unknown task {name!r} (loaded tasks: {', '.join(tasks)})")
    task = tasks[name]
    return name, form_of(task).parse(task, row, where, position)
