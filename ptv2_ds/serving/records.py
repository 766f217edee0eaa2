"""One JSON object <-> one example / one prediction, for mixed-task input (``ptv2 predict``
with several artifacts, ``ptv2 serve``).

The task families read whole files in their published formats (GLUE TSV, CoNLL columns, SQuAD
JSON); a mixed-task request holds single records instead: ``{"task": NAME, ...}`` plus that
task's record fields, which each family defines on the Task interface (``record_fields``,
``read_record``, ``prediction_record``), mirroring the rows of its prediction output:

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
(``file:line`` or ``item 3``) and names the field.
"""
from __future__ import annotations

from typing import Any

from ..tasks import Task
from ..tasks.base import RecordError

__all__ = ["RecordError", "parse_record"]


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
    return name, tasks[name].read_record(row, where, position)
