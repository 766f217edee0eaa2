"""``ptv2 serve``: the tasks of several ptv2 artifacts behind one HTTP JSON API, on one backbone.

  POST /predict  a JSON list of records ``{"task": NAME, ...that task's fields}``
                 (``records.py``) -> a list of predictions in the same order
  GET  /tasks    the loaded tasks: family, labels, record fields, prompt settings
  GET  /health   status and counters: requests, examples, batches (worker rounds) and
                 forward passes run
  GET  /docs     OpenAPI documentation (FastAPI)

Requests are validated and tokenized in the request handler (a bad record is that request's
4xx: 400/422 with a message naming the item and field, 413 for an oversized request), then
queued. One worker takes the first queued request, waits up to ``max_wait_ms`` for more, up to
``max_batch`` examples in all, and runs them together -- different tasks in the same batches
(``MultiTaskPredictor.predict_encoded``) -- in a thread, so the event loop keeps accepting
requests while the model runs.
"""
from __future__ import annotations

import asyncio
import sys
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .multitask import MultiTaskPredictor


@dataclass
class _Job:
    groups: list            # [(task name, Encoded)], one per task of the request
    size: int               # examples
    future: asyncio.Future


@dataclass
class Counters:
    requests: int = 0
    examples: int = 0
    batches: int = 0
    rejected: int = 0
    largest_batch: int = 0


class Batcher:
    """Merges queued requests into batches of at most ``max_batch`` examples (a larger request
    runs alone, in chunks of ``max_batch`` features) and runs them one batch at a time."""

    def __init__(self, predictor: MultiTaskPredictor, max_batch: int, max_wait_s: float):
        self.predictor, self.max_batch, self.max_wait_s = predictor, max_batch, max_wait_s
        self.counters = Counters()
        self.queue: asyncio.Queue | None = None

    async def submit(self, groups: list, size: int) -> list[list]:
        """Predictions per group, once the batch holding them has run."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(groups, size, future))
        return await future

    async def run(self) -> None:
        self.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        waiting: _Job | None = None
        while True:
            job = waiting or await self.queue.get()
            waiting = None
            jobs, size = [job], job.size
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch:
                try:
                    nxt = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self.queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if size + nxt.size > self.max_batch:
                    waiting = nxt   # starts the next batch
                    break
                jobs.append(nxt)
                size += nxt.size
            groups = [g for j in jobs for g in j.groups]
            try:
                predictions = await asyncio.to_thread(self.predictor.predict_encoded, groups,
                                                      self.max_batch)
            except Exception as e:  # a fault of the model, not of a request: each gets it
                print(f"[ptv2] batch failed: {type(e).__name__}: {e}", file=sys.stderr)
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            self.counters.batches += 1
            self.counters.examples += size
            self.counters.largest_batch = max(self.counters.largest_batch, size)
            start = 0
            for j in jobs:
                if not j.future.done():   # the client may have gone
                    j.future.set_result(predictions[start:start + len(j.groups)])
                start += len(j.groups)


def create_app(predictor: MultiTaskPredictor, max_batch: int = 32, max_wait_ms: float = 10.0,
               max_items: int = 256, max_chars: int = 100_000):
    """The FastAPI application serving ``predictor``'s tasks."""
    from fastapi import Body, FastAPI, HTTPException

    _check_limits(max_batch, max_wait_ms, max_items, max_chars)
    batcher = Batcher(predictor, max_batch, max_wait_ms / 1000)
    # tokenizers are not made for concurrent calls from several threads: one at a time
    encode_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(batcher.run())
        while batcher.queue is None:
            await asyncio.sleep(0)
        yield
        worker.cancel()

    app = FastAPI(title="ptv2 serve", lifespan=lifespan,
                  description="P-Tuning v2 tasks on one frozen backbone. POST /predict with a "
                              "list of {task, ...fields}; GET /tasks lists the tasks and their "
                              "fields.")
    app.state.batcher, app.state.predictor = batcher, predictor

    def reject(status: int, message: str):
        batcher.counters.rejected += 1
        raise HTTPException(status_code=status, detail=message)

    def prepare(items: list) -> tuple[list, list[tuple[str, int]], int]:
        """Parse, check and encode a request: (groups, (group, index) per item, size)."""
        order: dict[str, list[int]] = {}
        parsed = []
        for i, row in enumerate(items):
            chars = _chars(row)
            if chars > max_chars:
                reject(413, f"item {i}: {chars} characters of text, more than the server's "
                            f"--max-chars {max_chars}")
            try:
                name, example = predictor.parse(row, f"item {i}", position=i)
            except UserError as e:
                reject(422, str(e))
            order.setdefault(name, []).append(i)
            parsed.append(example)
        groups, where = [], [None] * len(items)
        with encode_lock:
            for g, (name, rows) in enumerate(order.items()):
                try:
                    groups.append((name, predictor.encode(name, [parsed[i] for i in rows])))
                except UserError as e:
                    reject(422, f"task {name}: {e}")
                for k, i in enumerate(rows):
                    where[i] = (g, k)
        return groups, where, len(items)

    @app.post("/predict", summary="Predict a list of records of any loaded tasks")
    async def predict(items: list[dict[str, Any]] = Body(
            ..., examples=[[{"task": "sst2", "sentence": "a great film"}]])) -> list[dict]:
        if len(items) > max_items:
            reject(413, f"{len(items)} items in one request, more than the server's "
                        f"--max-items {max_items}; split the request")
        if not items:
            return []
        groups, where, size = await asyncio.to_thread(prepare, items)
        batcher.counters.requests += 1
        results = await batcher.submit(groups, size)
        out = []
        for g, k in where:
            name, encoded = groups[g]
            out.append(predictor.render(name, results[g][k], encoded.examples[k]))
        return out

    @app.get("/tasks", summary="The loaded tasks with their labels and record fields")
    async def tasks() -> list[dict]:
        return [t.describe() for t in predictor.tasks.values()]

    @app.get("/health", summary="Status and counters")
    async def health() -> dict:
        c, s = batcher.counters, predictor.stats
        return {"status": "ok", "tasks": list(predictor.tasks), "requests": c.requests,
                "examples": c.examples, "batches": c.batches, "largest_batch": c.largest_batch,
                "rejected": c.rejected, "forward_passes": s.forward_passes,
                "mixed_forward_passes": s.mixed_forward_passes, "max_batch": max_batch,
                "max_wait_ms": max_wait_ms}

    return app


def _check_limits(max_batch: int, max_wait_ms: float, max_items: int, max_chars: int) -> None:
    if max_batch < 1 or max_items < 1 or max_chars < 1 or max_wait_ms < 0:
        raise UserError(f"--max-batch, --max-items and --max-chars must be >= 1 and "
                        f"--max-wait-ms >= 0 (got {max_batch}, {max_items}, {max_chars}, "
                        f"{max_wait_ms})")


def _chars(row) -> int:
    """Characters of text in a record (strings and lists of strings)."""
    if not isinstance(row, dict):
        return 0
    total = 0
    for value in row.values():
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, list):
            total += sum(len(v) for v in value if isinstance(v, str))
    return total


def serve(args) -> int:
    """``ptv2 serve`` (``args``: ``config.ServeArgs``): load, then run uvicorn until stopped."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("ptv2 serve needs FastAPI and uvicorn: pip install 'ptv2_ds[serve]'"
                        ) from None
    from ..inference import inference_placement
    from .multitask import read_artifacts

    _check_limits(args.max_batch, args.max_wait_ms, args.max_items, args.max_chars)
    served = read_artifacts([args.artifact] if isinstance(args.artifact, str)
                            else list(args.artifact))
    device, precision = inference_placement(args.device, args.precision, served[0][2])
    predictor = MultiTaskPredictor(served, args.model, args.model_path, device, precision,
                                   args.max_seq_len)
    app = create_app(predictor, args.max_batch, args.max_wait_ms, args.max_items,
                     args.max_chars)
    print(f"[ptv2] serving {', '.join(predictor.tasks)} on http://{args.host}:{args.port} "
          f"({device}, {precision}); docs at /docs", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
