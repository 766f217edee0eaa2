"""The per-micro-step agreement (trainer/guards.py): flags, loss and tokens in one read."""
from __future__ import annotations

import math
import signal

import pytest
import torch

from ptv2_ds.trainer.distributed import ensure_dist_env, init_distributed
from ptv2_ds.trainer.guards import StopFlags


@pytest.fixture(scope="module", autouse=True)
def one_rank():
    ensure_dist_env()  # RANK/WORLD_SIZE/MASTER_* for a single process, as `ptv2 train` sets
    init_distributed()


@pytest.fixture
def flags():
    f = StopFlags(signals=(signal.SIGUSR1,))
    yield f
    f.restore()


def test_a_finite_loss_is_passed_through_with_the_token_count(flags):
    loss = torch.tensor(0.6931, requires_grad=True) * 1.0
    preempt, not_finite, value, tokens = flags.agree(loss, torch.tensor(37)).result()
    assert (preempt, not_finite, tokens) == (False, False, 37)
    assert value == pytest.approx(0.6931)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_is_flagged_and_not_averaged_in(flags, bad):
    preempt, not_finite, value, _ = flags.agree(torch.tensor(bad), torch.tensor(3)).result()
    assert not preempt and not_finite and value == 0.0


def test_a_preemption_signal_is_reported(flags):
    flags._on_signal(signal.SIGUSR1, None)
    preempt, not_finite, _, _ = flags.agree(torch.tensor(1.0), torch.tensor(1)).result()
    assert preempt and not not_finite
    assert flags.preempt_signal == signal.SIGUSR1
