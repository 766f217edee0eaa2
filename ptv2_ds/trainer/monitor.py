"""What a run reports while it trains: TensorBoard scalars (rank 0), a per-step JSONL log and
the per-rank peak memory.

DeepSpeed's own monitor writes into ``OUT/tb/deepspeed`` (the ``"tensorboard"`` config section,
filled from ``--output-dir``); the toolkit's scalars go to ``OUT/tb/ptv2_ds``, so
``tensorboard --logdir OUT/tb`` shows both side by side.
"""
from __future__ import annotations

import json
import resource
from pathlib import Path

import torch

from . import distributed as dist_env


def peak_memory_bytes() -> int:
    """This rank's peak memory: device allocations on an accelerator, else the process's
    peak resident set size."""
    from deepspeed.accelerator import get_accelerator

    accel = get_accelerator()
    if accel.device_name() != "cpu":
        return int(accel.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def gather_peak_memory(device) -> list[int]:
    """Collective: every rank's peak memory, on every rank."""
    import deepspeed.comm as dist

    mine = torch.tensor([float(peak_memory_bytes())], device=device)
    world = dist.get_world_size()
    if world == 1:
        return [int(mine.item())]
    parts = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(parts, mine)
    return [int(p.item()) for p in parts]


class RunLog:
    """TensorBoard writer plus ``OUT/train_log.jsonl`` (one line per optimizer step), rank 0."""

    def __init__(self, out: Path, resumed_step: int | None):
        self.enabled = dist_env.is_main()
        self.writer = None
        self.path = out / "train_log.jsonl"
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tb" / "ptv2_ds"))
        # a resumed run re-does the steps after its checkpoint: drop their old lines
        kept = []
        if resumed_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resumed_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                if value is not None:
                    self.writer.add_scalar(name, value, step)

    def text(self, name: str, value: str) -> None:
        if self.writer is not None:
            self.writer.add_text(name, value, 0)

    def step_line(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def zero_report(engine, model, device) -> list[dict]:
    """Collective: what each rank actually holds, read from the engine and the parameters.

    ``frozen_local`` / ``trainable_local``: elements of this rank's parameter partitions
    (whole tensors without ZeRO-3); ``optimizer_state``: elements of every tensor in the
    optimizer's state (Adam moments), i.e. what the optimizer really covers;
    ``peak_memory_bytes``: as ``peak_memory_bytes()`` on that rank."""
    import deepspeed.comm as dist

    def local(p) -> int:
        return int(p.ds_tensor.numel()) if hasattr(p, "ds_tensor") else p.numel()

    trainable_ids = {id(p) for p in model.trainable_parameters()}
    frozen = sum(local(p) for p in model.parameters() if id(p) not in trainable_ids)
    trainable = sum(local(p) for p in model.parameters() if id(p) in trainable_ids)
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    state_elements = sum(t.numel() for s in inner.state.values() for t in s.values()
                         if torch.is_tensor(t) and t.dim() > 0)
    moments = sum(s["exp_avg"].numel() for s in inner.state.values() if "exp_avg" in s)
    mine = torch.tensor([frozen, trainable, state_elements, moments, peak_memory_bytes()],
                        dtype=torch.float64, device=device)
    parts = [mine]
    if dist.get_world_size() > 1:
        parts = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, mine)
    return [{"rank": r, "frozen_local": int(p[0]), "trainable_local": int(p[1]),
             "optimizer_state": int(p[2]), "adam_moment_elements": int(p[3]),
             "peak_memory_bytes": int(p[4])}
            for r, p in enumerate(parts)]
