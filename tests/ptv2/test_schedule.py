"""Learning-rate schedules (ptv2_ds/trainer/schedule.py): known multipliers, the exponential
schedule equal to the official code's per-epoch ExponentialLR, and the trainer using it."""
import json

import pytest
import torch

from ptv2_ds.cli.main import main
from ptv2_ds.trainer.schedule import lr_multiplier


def test_linear_warms_up_then_decays_to_zero_at_the_last_step():
    f = lr_multiplier("linear", warmup_steps=2, total_steps=6, steps_per_epoch=3)
    assert [f(s) for s in range(7)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_exponential_equals_exponential_lr_stepped_at_each_epoch_end():
    steps_per_epoch, epochs, peak = 3, 5, 2e-2
    param = torch.nn.Parameter(torch.zeros(1))
    official = torch.optim.SGD([param], lr=peak)
    per_epoch = torch.optim.lr_scheduler.ExponentialLR(official, gamma=0.95)
    expected = []
    for _ in range(epochs):
        expected += [per_epoch.get_last_lr()[0]] * steps_per_epoch
        official.step()
        per_epoch.step()

    ours = torch.optim.SGD([param], lr=peak)
    per_step = torch.optim.lr_scheduler.LambdaLR(
        ours, lr_multiplier("exponential", warmup_steps=0, total_steps=7,
                            steps_per_epoch=steps_per_epoch))
    got = []
    for _ in range(epochs * steps_per_epoch):
        got.append(per_step.get_last_lr()[0])
        ours.step()
        per_step.step()
    # total_steps does not matter: the schedule goes on past it unchanged
    assert got == pytest.approx(expected, rel=1e-12)


def test_exponential_after_warm_up_counts_epochs_from_the_start():
    f = lr_multiplier("exponential", warmup_steps=2, total_steps=100, steps_per_epoch=4,
                      decay=0.5)
    assert [f(s) for s in range(10)] == pytest.approx(
        [0.5, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])


@pytest.mark.parametrize("schedule,decay,message", [("cosine", 0.95, "--lr-schedule 'cosine'"),
                                                    ("exponential", 0.0, "--lr-decay 0")])
def test_unknown_schedule_or_decay_is_refused(schedule, decay, message):
    with pytest.raises(ValueError, match=message):
        lr_multiplier(schedule, warmup_steps=0, total_steps=1, steps_per_epoch=1, decay=decay)


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_cli_refuses_a_decay_outside_0_1(tiny_bert_dir, capsys, tmp_path, value):
    capsys.readouterr()
    assert main(["train", "--model", tiny_bert_dir, "--task", "rte", "--output-dir",
                 str(tmp_path), "--lr-schedule", "exponential", "--lr-decay", value]) == 2
    err = capsys.readouterr().err
    assert f"--lr-decay {float(value):g}: the rate's factor per epoch must be" in err
    assert "Traceback" not in err


def test_train_uses_the_exponential_schedule(tmp_path, tiny_bert_dir):
    from tests.conftest import SHARED_DATA
    sentences = [s for s in (SHARED_DATA / "conll04" / "train.txt").read_text().split("\n\n")
                 if s.strip()]
    for name, part in (("train", sentences[:32]), ("dev", sentences[32:40])):
        (tmp_path / f"{name}.txt").write_text("\n\n".join(part) + "\n")
    out = tmp_path / "run"
    assert main(["train", "--task", "conll04", "--model", tiny_bert_dir, "--method", "ptv2",
                 "--train-file", str(tmp_path / "train.txt"), "--validation-file",
                 str(tmp_path / "dev.txt"), "--output-dir", str(out), "--batch-size", "8",
                 "--max-seq-len", "64", "--epochs", "3", "--lr", "1e-2", "--log-every", "1",
                 "--lr-schedule", "exponential", "--lr-decay", "0.5"]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    # three epochs of equal length; the logged rate is the next step's
    per_epoch = len(rows) // 3
    assert per_epoch >= 4 and [r["step"] for r in rows] == list(range(1, 3 * per_epoch + 1))
    assert [r["lr"] for r in rows] == pytest.approx([1e-2 * 0.5 ** (s // per_epoch)
                                                     for s in range(1, 3 * per_epoch + 1)])
    saved = json.loads(next((out / "checkpoints").glob("step*/run_config.json")).read_text())
    assert saved["lr_schedule"] == "exponential" and saved["lr_decay"] == 0.5
