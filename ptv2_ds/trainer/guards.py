"""Stopping cleanly: preemption signals and diverged training.

Preemption: SIGTERM or SIGUSR1 (Slurm's warning signal) only sets a flag; the loop finishes
the current optimizer step, writes a checkpoint and exits with ``EXIT_PREEMPTED`` so the job
script can requeue. Divergence: a non-finite loss (fp32/bf16), or a run of fp16 overflow-
skipped steps, stops training before the bad update is applied, so the last checkpoint stays
good. Under several ranks every flag is agreed with one all-reduce per micro-step, because a
rank that stops alone would leave the others hanging in a collective; the same all-reduce
carries the loss and token count the log needs, and its result is read once per micro-step
without draining the accelerator's queue (``Agreement``).
"""
from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import torch

from ..errors import UserError

LOCK_FILE = ".ptv2_train.lock"
EXIT_PREEMPTED = 75      # EX_TEMPFAIL: "try again later" -> the sbatch script requeues
EXIT_DIVERGED = 3


class Preempted(Exception):
    """Raised after the preemption checkpoint has been written."""


class TrainingDiverged(Exception):
    """The loss went non-finite or the fp16 loss scale bottomed out."""


class StopFlags:
    def __init__(self, signals=(signal.SIGTERM, signal.SIGUSR1)):
        self.preempt_signal: int | None = None
        self._previous = {}
        for sig in signals:
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (e.g. some test runners): no handler
                pass

    def _on_signal(self, signum, frame) -> None:
        self.preempt_signal = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agree(self, loss: torch.Tensor, tokens: torch.Tensor) -> "Agreement":
        """Start agreeing this micro-step's flags and numbers over the ranks: preemption,
        a non-finite loss, the loss and the batch's token count, in one all-reduce of a
        4-vector built on the loss's device. Nothing here waits for the device: call
        ``Agreement.result()`` after ``engine.backward`` (on a GPU the backward kernels are
        queued by then, so reading the result stalls nothing)."""
        import deepspeed.comm as dist

        loss = loss.detach().double()
        finite = torch.isfinite(loss)
        values = torch.stack([torch.full_like(loss, float(self.preempt_signal is not None)),
                              (~finite).double(), torch.where(finite, loss, 0.0),
                              tokens.detach().double().reshape(())])
        world = dist.get_world_size()
        if world > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return Agreement(values, world)


class Agreement:
    """One micro-step's agreed (preempt, loss_not_finite, mean loss over ranks, tokens summed
    over ranks). On CUDA the 4 numbers are copied to pinned host memory without blocking and
    an event marks the copy; ``result()`` waits for that event only (the forward and the
    all-reduce), not for the whole device queue."""

    def __init__(self, values: torch.Tensor, world: int):
        self.world = world
        self.event = None
        if values.device.type == "cuda":
            self.values = values.to("cpu", non_blocking=True)  # into pinned memory
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.values = values

    def result(self) -> tuple[bool, bool, float, int]:
        if self.event is not None:
            self.event.synchronize()
        preempt, not_finite, loss_sum, tokens = self.values.tolist()
        return preempt > 0, not_finite > 0, loss_sum / self.world, int(tokens)


def loss_scale(engine) -> float | None:
    """The current fp16 loss scale, or None when the run does not scale the loss."""
    if not engine.fp16_enabled():
        return None
    optimizer = engine.optimizer
    for holder in (optimizer, getattr(optimizer, "loss_scaler", None)):
        value = getattr(holder, "cur_scale", None)
        if value is not None:
            return float(value)
    return None


def claim_output_dir(out: Path):
    """Hold an exclusive lock on the run directory ``out`` for as long as the returned file
    stays open (the OS drops it when the process ends, however it ends: no stale locks).

    Why: two ``ptv2 train`` processes writing one directory (a rerun while the first still
    runs, an orphaned sweep child) would interleave checkpoints, the artifact and
    metrics.json; the second is refused before it writes anything. Returns None where the
    platform has no ``flock`` (the check is skipped there)."""
    try:
        import fcntl
    except ImportError:
        return None
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "a process"
        handle.close()
        raise UserError(f"{out} is in use by another ptv2 train ({holder}): wait for it to "
                        "end or stop it, or give another --output-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle
