"""Learning-rate schedules: the multiplier of the peak rate at each optimizer step, for
``torch.optim.lr_scheduler.LambdaLR`` (stepped once per optimizer step; step 0 is the first).

linear       linear warm-up to 1 over the warm-up steps, then linear decay to 0 at the last
             step (the official code's SuperGLUE schedule, and ``ptv2 train``'s default).
exponential  linear warm-up, then the rate multiplied by ``decay`` once per epoch: during
             epoch e (0-based) it is ``decay ** e``. The official NER, SRL and QA code steps
             ``ExponentialLR(gamma=0.95)`` at each epoch's end, which gives the same rates. It
             does not depend on the number of epochs: the first 20 epochs of a 40-epoch run
             are a 20-epoch run.
"""
from __future__ import annotations

from typing import Callable

SCHEDULES = ("linear", "exponential")


def lr_multiplier(schedule: str, *, warmup_steps: int, total_steps: int, steps_per_epoch: int,
                  decay: float = 0.95) -> Callable[[int], float]:
    """The function step -> lr multiplier of ``schedule`` (one of ``SCHEDULES``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"--lr-schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"--lr-decay {decay}: expected a factor in (0, 1]")
    steps_per_epoch = max(1, steps_per_epoch)

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        if schedule == "exponential":
            return decay ** (step // steps_per_epoch)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return multiplier


__all__ = ["SCHEDULES", "lr_multiplier"]
