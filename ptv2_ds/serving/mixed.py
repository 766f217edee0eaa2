"""``ptv2 predict --artifact A --artifact B ... --input mixed.jsonl``: one JSON object per line
with a ``task`` field and that task's record fields (``records.py``); one prediction line per
input line, in input order, ``{"task", ...the family's prediction fields}``."""
from __future__ import annotations

import sys

from ..tasks import BadRows, Task
from ..tasks.base import write_jsonl
from ..tasks.readers import DataFormatError, read_jsonl
from .multitask import MultiTaskPredictor, read_artifacts
from .records import RecordError, parse_record


def read_mixed(path: str, tasks: dict[str, Task], skip_bad_rows: bool = False
               ) -> list[tuple[str, object]]:
    """``(task name, example)`` per line of a mixed-task JSONL file (``tasks``: the served
    tasks by name); a bad line is a ``file:line`` error naming the field (or, with
    ``skip_bad_rows``, skipped and counted)."""
    bad = BadRows(skip_bad_rows)
    items = []
    for number, row in read_jsonl(path):
        try:
            items.append(parse_record(tasks, row, f"{path}:{number}", position=len(items)))
        except RecordError as e:   # the message names file:line and the field
            bad(str(e))
    bad.report(path)
    if not items:
        raise DataFormatError(f"{path}: no valid lines")
    return items


def predict_mixed(args, artifacts: list[str]) -> int:
    """The multi-artifact ``ptv2 predict`` (``args``: ``config.PredictArgs``)."""
    from ..errors import UserError
    from ..inference import inference_placement
    from ..trainer import distributed as dist_env

    if dist_env.world_size() > 1:
        raise UserError("ptv2 predict with several --artifact runs in one process; start it "
                        "without the deepspeed launcher")
    if args.task is not None:
        raise UserError("--task does not apply with several --artifact: each input line names "
                        "its task in its 'task' field")
    served = read_artifacts(artifacts)
    # the input is read and checked before the backbone is loaded: bad lines fail in seconds
    items = read_mixed(args.input, {name: task for name, *_, task in served},
                       args.skip_bad_rows)
    device, precision = inference_placement(args.device, args.precision, served[0][2])
    predictor = MultiTaskPredictor(served, args.model, args.model_path, device, precision,
                                   args.max_seq_len)
    predictions = predictor.predict(items, args.batch_size)
    write_jsonl(args.output, (predictor.render(name, p, example)
                              for (name, example), p in zip(items, predictions)))
    print(f"[ptv2] wrote {len(items)} predictions of {len(predictor.tasks)} tasks to "
          f"{args.output} ({predictor.stats.forward_passes} batches)", file=sys.stderr)
    return 0
