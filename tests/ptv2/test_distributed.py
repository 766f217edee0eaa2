"""Two real ZeRO-3 ranks on CPU through the DeepSpeed launcher (DS_ACCELERATOR=cpu, gloo).

One module-scoped uninterrupted run per backbone is the reference; the preemption tests kill
and resume the same command and compare the per-step losses in OUT/train_log.jsonl. The
exact-resume tests with dropout on (model, prefix and head) also cover ZeRO-2, where DeepSpeed
writes one model-states file for all ranks (each rank's RNG has its own file). The last tests
start two plain processes to check the process-group tear-down.
"""
from __future__ import annotations

import json
import os
import shutil
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
    cmd = command(tiny_glm_dir, rte_data, out, 2)
    run(cmd)
    (out / "master_port.txt").write_text(cmd[cmd.index("--master_port") + 1])
    return out


def test_two_rank_zero3_glm_trains_and_shards(glm_reference):
    out = glm_reference
    # DeepSpeed's CPU shared-memory buffers (one file per rank, named after the port) are
    # removed when the ranks exit (they used to pile up in /dev/shm, 69 MB a rank a run)
    port = (out / "master_port.txt").read_text()
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("deepspeed_allreduce_buffer")
                and f"_{port}_" in f]
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
    # even killed ranks leave no shared-memory file: each removes its own after set-up
    port = cmd[cmd.index("--master_port") + 1]
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("deepspeed_allreduce_buffer")
                and f"_{port}_" in f]
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


# ---- exact resume with dropout on, ZeRO-2 and ZeRO-3 -------------------------------------------

def ds_config_for(stage: int, directory: Path) -> str:
    if stage == 3:
        return str(REPO / "ds_configs" / "cpu_zero3.json")
    config = json.loads((REPO / "ds_configs" / "cpu.json").read_text())
    config["zero_optimization"] = {"stage": stage}
    path = directory / f"cpu_zero{stage}.json"
    path.write_text(json.dumps(config))
    return str(path)


def rank_rng(tag: Path, rank: int) -> torch.Tensor:
    return torch.load(tag / f"rng_rank{rank}.pt", weights_only=True)["torch"]


@pytest.mark.parametrize("stage", [2, 3], ids=["zero2", "zero3"])
def test_exact_resume_with_dropout_on(stage, dropout_bert_dir, rte_data, tmp_path):
    """Dropout draws from each rank's own RNG: a run resumed from a checkpoint matches the
    uninterrupted run only if every rank gets its own RNG state back (below ZeRO-3 DeepSpeed
    keeps the client state of rank 0 alone). The ranks' CPU RNG states differ after some steps
    and coincide after others, so the resume starts from a checkpoint where they differ
    (with a signal, which checkpoint gets resumed depends on timing; the preemption path
    itself is covered by test_resume_after_kill_matches_uninterrupted)."""
    extra = ["--deepspeed", ds_config_for(stage, tmp_path), "--prefix-dropout", "0.1",
             "--head-dropout", "0.1", "--max-steps", "8", "--eval-every", "4",
             "--save-every", "1", "--save-total-limit", "100"]
    reference = tmp_path / "reference"
    run(command(dropout_bert_dir, rte_data, reference, 2, *extra))
    tags = reference / "checkpoints"
    differing = [step for step in range(7, 0, -1)
                 if not torch.equal(rank_rng(tags / f"step{step}", 0),
                                    rank_rng(tags / f"step{step}", 1))]
    assert differing, "the ranks' RNG states never differ: the test could not tell them apart"
    start = differing[0]
    out = tmp_path / "resumed"
    run(command(dropout_bert_dir, rte_data, out, 2, *extra,
                "--resume", str(tags / f"step{start}")))
    resumed, expected = losses(out), losses(reference)
    assert sorted(resumed) == list(range(start + 1, 9))
    for step in range(start + 1, 9):
        assert resumed[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step
    for rank in (0, 1):  # and the RNG after the last step is the uninterrupted run's
        assert torch.equal(rank_rng(out / "checkpoints" / "step8", rank),
                           rank_rng(tags / "step8", rank))


def test_rerun_with_a_different_lr_is_refused(glm_reference, tiny_glm_dir, rte_data, tmp_path):
    """A finished run's directory, rerun with another --lr: exit 2 with what differs, and
    nothing trained or overwritten."""
    out = tmp_path / "finished"
    shutil.copytree(glm_reference, out)
    before = (out / "metrics.json").read_text()
    done = run(command(tiny_glm_dir, rte_data, out, 2, "--lr", "1e-2"), check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    text = done.stdout + done.stderr
    assert "error: cannot resume from" in text
    assert "--lr 0.005 (checkpoint) vs 0.01 (now)" in text
    assert "--resume none" in text
    assert (out / "metrics.json").read_text() == before
    assert losses(out) == losses(glm_reference)


# ---- process-group tear-down -----------------------------------------------------------------

SHUTDOWN_SCRIPT = """
import os, sys, time, torch
from ptv2_ds.trainer import distributed as d
import deepspeed
d.init_distributed()  # deepspeed.init_distributed + this rank's shared-memory file removed
model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 2))
model[0].requires_grad_(False)
params = [p for p in model.parameters() if p.requires_grad]
engine, *_ = deepspeed.initialize(
    model=model, model_parameters=params, optimizer=torch.optim.AdamW(params, lr=0.1),
    config={"train_micro_batch_size_per_gpu": 2, "steps_per_print": 10 ** 9,
            "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}})
for _ in range(3):
    loss = engine(torch.ones(2, 16)).sum()
    engine.backward(loss)
    engine.step()
if sys.argv[1] == "peer-gone" and d.rank() == 1:
    os._exit(0)  # leaves without the final barrier
start = time.time()
first = d.shutdown(timeout_s=float(sys.argv[2]))
second = d.shutdown()
print(f"RESULT rank={d.rank()} first={first} second={second} "
      f"initialized={torch.distributed.is_initialized()} seconds={time.time() - start:.1f}",
      flush=True)
"""


def run_two_ranks(tmp_path, *args) -> list[tuple[int, str]]:
    script = tmp_path / "shutdown_script.py"
    script.write_text(SHUTDOWN_SCRIPT)
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, str(script), *args], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                                   "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in (0, 1)]
    return [(p.wait(timeout=TIMEOUT), p.stdout.read()) for p in procs]


def test_shutdown_ends_both_ranks_in_order(tmp_path):
    for code, output in run_two_ranks(tmp_path, "both", "60"):
        assert code == 0, output[-3000:]
        assert "first=True second=False initialized=False" in output, output[-3000:]


def test_shutdown_does_not_hang_when_a_peer_is_gone(tmp_path):
    (code0, out0), (code1, _) = run_two_ranks(tmp_path, "peer-gone", "5")
    assert code1 == 0
    assert "RESULT rank=0 first=False second=False" in out0, out0[-3000:]
    seconds = float(out0.split("seconds=")[1].split()[0])
    assert seconds < 60, out0[-3000:]


def test_two_rank_sharded_eval_and_predict_equal_one_process(glm_reference, rte_data,
                                                             tmp_path):
    """`ptv2 eval`/`predict` under the launcher: each rank runs a share of the rows (9 rows:
    5 + 4, the short share padded), rank 0 reports; the same numbers as one process."""
    data = tmp_path / "dev.jsonl"
    rows = (rte_data / "train.jsonl").read_text().splitlines()[:9]
    data.write_text("\n".join(rows) + "\n")
    artifact = str(glm_reference / "artifact")
    launcher = [DEEPSPEED, "--num_gpus", "2", "--master_port", str(free_port()),
                "--module", "ptv2_ds.cli.main"]
    single = [sys.executable, "-m", "ptv2_ds.cli.main"]
    scores = []
    for prefix in (single, launcher):
        done = run(prefix + ["eval", "--artifact", artifact, "--data", str(data)])
        printed = [json.loads(line) for line in done.stdout.splitlines()
                   if line.startswith('{"task"')]
        assert len(printed) == 1  # rank 0 only
        scores.append(printed[0])
    assert scores[0] == scores[1] and scores[0]["examples"] == 9
    outputs = []
    for name, prefix in (("one", single), ("two", launcher)):
        path = tmp_path / f"{name}.jsonl"
        run(prefix + ["predict", "--artifact", artifact, "--input", str(data), "--output",
                      str(path)])
        outputs.append([json.loads(line) for line in path.read_text().splitlines()])
    assert len(outputs[1]) == 9
    assert [r["label"] for r in outputs[0]] == [r["label"] for r in outputs[1]]
    for a, b in zip(*outputs):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)


# ---- CPU collectives: stale compile locks and leaked shared memory ----------------------------

def test_stale_build_lock_is_removed_fresh_one_kept(tmp_path, monkeypatch, capsys):
    import torch.utils.cpp_extension as cpp

    from ptv2_ds.trainer import distributed

    monkeypatch.setattr(cpp, "_get_build_directory", lambda name, verbose: str(tmp_path))
    lock = tmp_path / "lock"
    lock.touch()
    distributed._remove_stale_build_lock()
    assert lock.exists()  # a compile may be running right now
    old = time.time() - 2 * distributed.STALE_LOCK_S
    os.utime(lock, (old, old))
    distributed._remove_stale_build_lock()
    assert not lock.exists() and "stale build lock" in capsys.readouterr().out


def test_shm_buffer_path_follows_deepspeeds_naming(monkeypatch, tmp_path):
    from ptv2_ds.trainer import distributed

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29511")
    monkeypatch.setenv("RANK", "1")
    assert distributed.shm_buffer_path() == \
        f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_29511_1"
    leftover = tmp_path / "buffer"
    leftover.write_bytes(b"x")
    distributed._unlink_shm_buffer(str(leftover))
    distributed._unlink_shm_buffer(str(leftover))  # already gone: no error
    assert not leftover.exists()


HEAP_SCRIPT = """
import sys, psutil, torch
from ptv2_ds.trainer.distributed import return_freed_memory_to_the_os
if sys.argv[1] == "tuned":
    assert return_freed_memory_to_the_os()
x = torch.ones(16 * 2**20, dtype=torch.uint8); del x  # glibc raises its mmap threshold
base = psutil.Process().memory_full_info().uss
blocks = [torch.ones(4 * 2**20, dtype=torch.uint8) for _ in range(50)]  # like gathered weights
pin = torch.ones(2**19, dtype=torch.uint8)  # a live block above them: no heap trim
del blocks
print((psutil.Process().memory_full_info().uss - base) / 2**20)
"""


def test_freed_gather_sized_blocks_go_back_to_the_os():
    """What makes ZeRO-3 CPU ranks' memory fall with the rank count: 200 MiB of 4 MiB blocks,
    freed, stay resident under glibc's defaults and are returned with the tuned allocator."""
    held = {}
    for mode in ("plain", "tuned"):
        done = subprocess.run([sys.executable, "-c", HEAP_SCRIPT, mode], capture_output=True,
                              text=True, cwd=REPO, check=True)
        held[mode] = float(done.stdout.strip())
    assert held["plain"] > 150 and held["tuned"] < 20, held


TRIM_SCRIPT = """
import sys, psutil, torch
from ptv2_ds.trainer.distributed import return_freed_memory_to_the_os, release_free_heap
assert return_freed_memory_to_the_os()
base = psutil.Process().memory_full_info().uss
blocks, pins = [], []
for _ in range(800):  # 256 KiB blocks (under the mmap threshold), each with a live chunk
    blocks.append(torch.ones(256 * 2**10, dtype=torch.uint8))  # above it: freed, they cannot
    pins.append(torch.ones(2**10, dtype=torch.uint8))          # merge into the heap's top
del blocks
if sys.argv[1] == "trim":
    assert release_free_heap()
print((psutil.Process().memory_full_info().uss - base) / 2**20)
"""


def test_heap_trim_returns_freed_small_blocks():
    """The other half of ZeRO-3 CPU memory: 200 MiB of freed 256 KiB blocks below a live chunk
    stay resident between live chunks until release_free_heap() trims the heap."""
    held = {}
    for mode in ("keep", "trim"):
        done = subprocess.run([sys.executable, "-c", TRIM_SCRIPT, mode], capture_output=True,
                              text=True, cwd=REPO, check=True)
        held[mode] = float(done.stdout.strip())
    assert held["keep"] > 150 and held["trim"] < 20, held
