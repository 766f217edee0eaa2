"""Stopping cleanly: preemption signals and diverged training.

Preemption: SIGTERM or SIGUSR1 (Slurm's warning signal) only sets a flag; the loop finishes
the current optimizer step, writes a checkpoint and exits with ``EXIT_PREEMPTED`` so the job
script can requeue. Divergence: a non-finite loss (fp32/bf16), or a run of fp16 overflow-
skipped steps, stops training before the bad update is applied, so the last checkpoint stays
good. Under several ranks every flag is agreed with one all-reduce per micro-step, because a
rank that stops alone would leave the others hanging in a collective.
"""
from __future__ import annotations

import signal

import torch

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

    def agree(self, loss: torch.Tensor, device) -> tuple[bool, bool, float]:
        """(preempt, loss_not_finite, mean loss over ranks), agreed by all ranks in one
        all-reduce."""
        import deepspeed.comm as dist

        loss = loss.detach().float()
        finite = bool(torch.isfinite(loss))
        values = torch.tensor([float(self.preempt_signal is not None), float(not finite),
                               loss.item() if finite else 0.0], device=device)
        world = dist.get_world_size()
        if world > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return bool(values[0] > 0), bool(values[1] > 0), float(values[2]) / world


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
