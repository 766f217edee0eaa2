"""The per-micro-step agreement (trainer/guards.py): flags, loss and tokens in one read."""
from __future__ import annotations

import math
import os
import signal

import pytest
import torch

from ptv2_ds.trainer.distributed import ensure_dist_env, init_distributed
from ptv2_ds.cli.main import main
from ptv2_ds.errors import UserError
from ptv2_ds.trainer.guards import LOCK_FILE, StopFlags, claim_output_dir


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


def test_a_run_directory_is_held_by_one_process_at_a_time(tmp_path):
    first = claim_output_dir(tmp_path / "run")
    with pytest.raises(UserError, match=rf"in use by another ptv2 train \(pid {os.getpid()} "):
        claim_output_dir(tmp_path / "run")
    first.close()  # as when the first process ends
    claim_output_dir(tmp_path / "run").close()


def test_train_into_a_directory_in_use_is_refused_before_writing(tmp_path, tiny_bert_dir,
                                                                 sst2_tiny, capsys):
    out = tmp_path / "run"
    argv = ["train", "--task", "sst2", "--model", tiny_bert_dir, "--train-file",
            sst2_tiny["train"], "--validation-file", sst2_tiny["dev"], "--max-steps", "1",
            "--output-dir", str(out)]
    holder = claim_output_dir(out)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"{out} is in use by another ptv2 train" in captured.out + captured.err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    holder.close()
    assert main(argv) == 0 and (out / "metrics.json").is_file()
