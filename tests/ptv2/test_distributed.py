"""Two real ZeRO-3 ranks on CPU through the DeepSpeed launcher (DS_ACCELERATOR=cpu, gloo).

One module-scoped uninterrupted run per backbone is the reference; the preemption tests kill
and resume the same command and compare the per-step losses in OUT/train_log.jsonl.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from ptv2_ds.trainer.distributed import free_port
from tests.conftest import REPO
from tests.ptv2.test_glm_backbone import RTE_ROWS

pytestmark = pytest.mark.multirank
DEEPSPEED = str(Path(sys.executable).with_name("deepspeed"))
TIMEOUT = 300


@pytest.fixture(scope="module")
def rte_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("rte2")
    rows = RTE_ROWS * 2  # 32 rows: 4 global batches of 8 per epoch
    lines = [json.dumps({"premise": p, "hypothesis": h, "label": y, "idx": i})
             for i, (p, h, y) in enumerate(rows)]
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")
    (out / "val.jsonl").write_text("\n".join(lines[:8]) + "\n")
    return out


def command(model_dir, data, out, ranks: int, *extra) -> list[str]:
    global_batch = 8
    args = ["train", "--model", str(model_dir), "--task", "rte",
            "--train-file", str(data / "train.jsonl"), "--validation-file", str(data / "val.jsonl"),
            "--output-dir", str(out), "--deepspeed", str(REPO / "ds_configs" / "cpu_zero3.json"),
            "--precision", "fp32", "--batch-size", str(global_batch // ranks),
            "--max-seq-len", "48", "--prefix-len", "4", "--lr", "5e-3", "--max-steps", "12",
            "--eval-every", "6", "--save-every", "2", "--log-every", "2",
            "--prefix-dropout", "0", "--head-dropout", "0", "--seed", "7", *extra]
    launcher = [DEEPSPEED, "--num_gpus", str(ranks), "--master_port", str(free_port()),
                "--module", "ptv2_ds.cli.main"]
    return launcher + args


def env() -> dict:
    return {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def run(cmd, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=REPO)
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def rank_processes(launcher: psutil.Popen) -> list[psutil.Process]:
    return [p for p in launcher.children(recursive=True)
            if any(a.startswith("--local_rank=") for a in p.cmdline())]


def interrupt_after(cmd, out: Path, step: int, sig: int) -> int:
    """Start a run, deliver ``sig`` to every rank once step ``step`` is logged, wait."""
    launcher = psutil.Popen(cmd, env=env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log = out / "train_log.jsonl"
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and launcher.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= step:
            for p in rank_processes(launcher):
                p.send_signal(sig)
            break
        time.sleep(0.02)
    output, _ = launcher.communicate(timeout=TIMEOUT)
    assert log.is_file(), output[-3000:]
    return launcher.returncode


@pytest.fixture(scope="module")
def glm_reference(tiny_glm_dir, rte_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("glm_ref")
    run(command(tiny_glm_dir, rte_data, out, 2))
    return out


def test_two_rank_zero3_glm_trains_and_shards(glm_reference):
    out = glm_reference
    steps = losses(out)
    assert sorted(steps) == list(range(1, 13))
    assert sum(steps[s] for s in (10, 11, 12)) < sum(steps[s] for s in (1, 2, 3))
    report = json.loads((out / "zero_report.json").read_text())
    assert report["zero_stage"] == 3 and report["world_size"] == 2
    frozen = report["backbone_params"]
    trainable = report["trainable_params"]
    for rank in report["ranks"]:
        # each rank holds about half of the frozen backbone
        assert abs(rank["frozen_local"] - frozen / 2) <= 0.01 * frozen
        # Adam state (first moment) covers this rank's share of the trainable parameters only
        assert rank["adam_moment_elements"] < 0.01 * frozen
    covered = sum(r["adam_moment_elements"] for r in report["ranks"])
    assert trainable <= covered <= trainable + 2 * 64  # ZeRO pads partitions for alignment


def test_checkpoints_hold_no_frozen_weights(glm_reference):
    tags = sorted((glm_reference / "checkpoints").glob("step*"))
    assert tags and all((t / "COMPLETE").is_file() for t in tags)
    report = json.loads((glm_reference / "zero_report.json").read_text())
    frozen_bytes = report["backbone_params"] * 4
    for tag in tags:
        size = sum(f.stat().st_size for f in tag.iterdir())
        assert size < frozen_bytes / 10, (tag, size, frozen_bytes)
        for states_file in tag.glob("*model_states.pt"):
            states = torch.load(states_file, map_location="cpu", weights_only=False)
            assert not [k for k in (states["module"] or {}) if k.startswith("backbone.")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_resume_after_kill_matches_uninterrupted(glm_reference, tiny_glm_dir, rte_data,
                                                 tmp_path, sig):
    out = tmp_path / "run"
    cmd = command(tiny_glm_dir, rte_data, out, 2)
    code = interrupt_after(cmd, out, 3, sig)
    if sig == signal.SIGTERM:
        assert code == 75  # EX_TEMPFAIL: checkpointed, requeue me
    else:
        assert code != 0
    interrupted_at = max(losses(out))
    assert interrupted_at < 12, "the run finished before it could be interrupted"
    run(cmd)  # --resume auto is the default
    resumed = losses(out)
    reference = losses(glm_reference)
    assert sorted(resumed) == list(range(1, 13))
    for step in range(1, 13):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-7), step
    ref_art = load_file(str(glm_reference / "artifact" / "model.safetensors"))
    new_art = load_file(str(out / "artifact" / "model.safetensors"))
    for key in ref_art:
        torch.testing.assert_close(new_art[key], ref_art[key], rtol=1e-5, atol=1e-6)


def test_two_rank_artifact_equals_one_rank(glm_reference, tiny_glm_dir, rte_data, tmp_path):
    out = tmp_path / "one"
    run(command(tiny_glm_dir, rte_data, out, 1))
    one, two = losses(out), losses(glm_reference)
    for step in two:
        assert one[step] == pytest.approx(two[step], rel=1e-4, abs=1e-6)
    a = load_file(str(out / "artifact" / "model.safetensors"))
    b = load_file(str(glm_reference / "artifact" / "model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_two_rank_zero3_bert_trains(tiny_bert_dir, rte_data, tmp_path):
    out = tmp_path / "bert"
    run(command(tiny_bert_dir, rte_data, out, 2, "--max-steps", "8", "--eval-every", "8"))
    steps = losses(out)
    assert sum(steps[s] for s in (6, 7, 8)) < sum(steps[s] for s in (1, 2, 3))
    report = json.loads((out / "zero_report.json").read_text())
    for rank in report["ranks"]:
        assert abs(rank["frozen_local"] - report["backbone_params"] / 2) \
            <= 0.01 * report["backbone_params"]
    meta = json.loads((out / "artifact" / "ptv2_artifact.json").read_text())
    assert meta["backbone"]["kind"] == "hf"
