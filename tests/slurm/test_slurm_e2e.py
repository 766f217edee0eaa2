"""The job scripts end to end on a real Slurm cluster: slurm/local_cluster.sh starts two
slurmd nodes (n1, n2, 1 CPU each) on this machine, and slurm/glm10b_rte.sh is submitted with
sbatch as a user would, its GPU #SBATCH lines overridden on the command line for CPU, pointed
at a tiny GLM and tiny RTE data: 2 nodes x 1 rank, ZeRO-3 through DeepSpeed, LAUNCHER=srun.

Needs root (the fixture installs slurm-wlm and munge with apt-get when they are missing). A
machine without root or apt skips with the way to enable it; with CI=true it fails instead.
One uninterrupted job is the reference; the preempted job is signalled the way Slurm's
``--signal=B:USR1@T`` does it and must requeue itself, resume and log the same losses.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ptv2.test_distributed import losses, rte_data  # noqa: F401 - a fixture
from tests.slurm.test_slurm import _clean_env

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "slurm" / "local_cluster.sh"
JOB_TIMEOUT = 420            # one job; a loaded 2-core machine starts DeepSpeed ranks slowly
MAX_STEPS = 40               # long enough to signal the job mid-run (about 4 steps a second)
ENABLE = ("run the tests as root on a machine with apt-get (Debian/Ubuntu), or start the "
          "cluster yourself with 'sudo slurm/local_cluster.sh start'")


def _cannot_run(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the Slurm end-to-end tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"no local Slurm cluster: {reason}; {ENABLE}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start slurm/local_cluster.sh (unless it already runs), stop it at the end if started
    here. Yields the environment Slurm's commands need (SLURM_CONF)."""
    env = _clean_env()      # PTV2_SLURM_DIR (if set) picks the cluster's state directory
    if subprocess.run(["bash", str(CLUSTER), "status"], env=env,
                      capture_output=True).returncode == 0:
        started = False
    else:
        if os.geteuid() != 0:
            _cannot_run("not root")
        if not shutil.which("slurmctld") and not shutil.which("apt-get"):
            _cannot_run("Slurm is not installed and there is no apt-get to install it")
        proc = subprocess.run(["bash", str(CLUSTER), "start"], env=env, capture_output=True,
                              text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"slurm/local_cluster.sh start failed:\n{proc.stderr[-3000:]}",
                        pytrace=False)
        started = True
    line = subprocess.run(["bash", str(CLUSTER), "env"], env=env, capture_output=True,
                          text=True).stdout.strip()          # export SLURM_CONF=...
    env["SLURM_CONF"] = line.split("=", 1)[1]
    try:
        yield env
    finally:
        if started:
            subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True,
                           timeout=300)


def _job_env(cluster_env: dict, model: str, data: Path, out: Path, **extra) -> dict:
    """What `sbatch` exports to the job: the job script's variables for a tiny CPU run."""
    venv_bin = str(Path(sys.executable).parent)
    return {**cluster_env,
            "PATH": f"{venv_bin}{os.pathsep}{cluster_env.get('PATH', '/usr/bin:/bin')}",
            "PYTHON": sys.executable, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
            "LAUNCHER": "srun", "GPUS_PER_NODE": "1", "SRUN_WAIT": "60",
            "MODEL": model, "MODEL_PATH": model, "DATA_DIR": str(data), "OUT": str(out),
            "DS_CONFIG": "ds_configs/cpu_zero3.json", "PRECISION": "fp32", "BATCH_SIZE": "4",
            "MAX_SEQ_LEN": "48", "PREFIX_LEN": "4", "LR": "5e-3", "SEED": "7",
            "GRADIENT_CHECKPOINTING": "0",
            "EXTRA_ARGS": f"--max-steps {MAX_STEPS} --eval-every 20 --save-every 10 "
                          "--log-every 1 --prefix-dropout 0 --head-dropout 0",
            **extra}


def submit(env: dict, logs: Path, script: str = "glm10b_rte.sh") -> str:
    """sbatch a job script with its GPU #SBATCH lines overridden for the CPU nodes."""
    logs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["sbatch", "--parsable", "--nodes=2", "--gpus-per-node=0", "--cpus-per-task=1",
         "--mem=2000", "--time=30", f"--output={logs}/%j.out", f"--error={logs}/%j.err",
         f"slurm/{script}"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_info(env: dict, job: str) -> dict[str, str]:
    """`scontrol show job` as a dict (no accounting daemon here, so no sacct)."""
    for attempt in range(5):    # a busy controller sometimes drops a connection: ask again
        proc = subprocess.run(["scontrol", "-o", "show", "job", job], env=env,
                              capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            break
        time.sleep(2)
    assert proc.returncode == 0, proc.stderr
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


def wait_for(env: dict, job: str, done, what: str, logs: Path | None = None) -> dict:
    deadline = time.time() + JOB_TIMEOUT
    while True:
        info = job_info(env, job)
        if done(info):
            return info
        if time.time() > deadline:
            tail = ""
            if logs is not None:
                tail = "".join(p.read_text()[-2000:] for p in sorted(logs.glob(f"{job}.*")))
            raise AssertionError(f"job {job}: no {what} after {JOB_TIMEOUT}s "
                                 f"(JobState={info.get('JobState')})\n{tail}")
        time.sleep(1)


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def wait_final(env: dict, job: str, logs: Path) -> dict:
    return wait_for(env, job, lambda i: i.get("JobState") in FINAL, "final state", logs)


def log_text(logs: Path, job: str) -> tuple[str, str]:
    return (logs / f"{job}.out").read_text(), (logs / f"{job}.err").read_text()


def explain(env: dict, job: str, info: dict, logs: Path) -> str:
    """What a failed assertion shows: the job's state and reason, the controller's lines about
    it (a job killed before its script ran leaves nothing in its own log) and the log tails."""
    ctld = Path(env["SLURM_CONF"]).parents[1] / "log" / "slurmctld.log"
    lines = [line for line in ctld.read_text(errors="replace").splitlines()
             if f"JobId={job} " in line + " "] if ctld.is_file() else []
    stdout, stderr = log_text(logs, job)
    state = {k: info.get(k) for k in ("JobState", "Reason", "ExitCode", "Restarts")}
    return (f"{state}\nslurmctld:\n" + "\n".join(lines[-20:]) + "\nstdout:\n"
            + stdout[-2000:] + "\nstderr:\n" + stderr[-3000:])


@pytest.fixture(scope="module")
def reference_job(slurm_cluster, tiny_glm_dir, rte_data, tmp_path_factory):  # noqa: F811
    """One uninterrupted job: (job id, its info, the run directory, the log directory)."""
    root = tmp_path_factory.mktemp("slurm_ref")
    env = _job_env(slurm_cluster, tiny_glm_dir, rte_data, root / "run")
    job = submit(env, root / "logs")
    info = wait_final(slurm_cluster, job, root / "logs")
    return job, info, root / "run", root / "logs"


def test_start_is_idempotent(slurm_cluster):
    proc = subprocess.run(["bash", str(CLUSTER), "start"], env=slurm_cluster,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stderr
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c"], env=slurm_cluster,
                           capture_output=True, text=True, timeout=60).stdout.split("\n")
    assert sorted(line for line in nodes if line) == ["n1 1", "n2 1"]


def test_job_script_trains_on_two_nodes(slurm_cluster, reference_job):
    job, info, out, logs = reference_job
    stdout, stderr = log_text(logs, job)
    assert info["JobState"] == "COMPLETED", explain(slurm_cluster, job, info, logs)
    assert info["ExitCode"] == "0:0" and info["Restarts"] == "0"
    assert info["NodeList"] == "n[1-2]"
    assert "2 node(s) x 1 GPU(s), launcher srun" in stderr
    assert "world_size=2 zero_stage=3" in stdout
    # rank 0 alone reports and writes: one summary line, one log row per step, one writer per
    # TensorBoard run
    assert stdout.count("[ptv2] best accuracy") == 1
    assert sorted(losses(out)) == list(range(1, MAX_STEPS + 1))
    assert len((out / "train_log.jsonl").read_text().splitlines()) == MAX_STEPS
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["step"] == MAX_STEPS
    assert (out / "artifact" / "model.safetensors").is_file()
    for run in ("ptv2_ds", "deepspeed"):
        assert len(list((out / "tb" / run).glob("events.out.tfevents.*"))) == 1, run
    report = json.loads((out / "zero_report.json").read_text())
    assert report["zero_stage"] == 3 and report["world_size"] == 2
    # the job log carries the toolkit's lines, not the dependencies' per-step deprecations
    assert "FutureWarning" not in stderr
    assert "DeprecationWarning" not in stderr


def test_warning_signal_checkpoints_requeues_and_resumes_exactly(slurm_cluster, reference_job,
                                                                 tiny_glm_dir, rte_data,  # noqa: F811
                                                                 tmp_path):
    ref_job, ref_info, ref_out, _ = reference_job
    assert ref_info["JobState"] == "COMPLETED"
    out, logs = tmp_path / "run", tmp_path / "logs"
    job = submit(_job_env(slurm_cluster, tiny_glm_dir, rte_data, out), logs)
    log = out / "train_log.jsonl"
    deadline = time.time() + JOB_TIMEOUT
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert job_info(slurm_cluster, job)["JobState"] in {"PENDING", "CONFIGURING", "RUNNING"}, \
            "".join(log_text(logs, job))[-3000:]
        assert time.time() < deadline, "the job did not start training"
        time.sleep(0.1)
    # what `#SBATCH --signal=B:USR1@300` does near the time limit: USR1 to the batch shell
    proc = subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=slurm_cluster,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # the script requeues the job, which then waits for its begin time: until its old
    # credentials expire (cred_expire, 20 s on the local cluster). Forcing an earlier start
    # (scontrol update StartTime=now) gets it killed as "Job credential revoked".
    info = wait_final(slurm_cluster, job, logs)
    stdout, stderr = log_text(logs, job)
    assert info["JobState"] == "COMPLETED", explain(slurm_cluster, job, info, logs)
    assert info["Restarts"] == "1" and info["ExitCode"] == "0:0"
    assert "received SIGUSR1" in stderr
    assert "training stopped for preemption (exit code 75)" in stderr
    assert f"requeueing job {job} (restart 1)" in stderr
    assert f"job {job} restart 1:" in stderr
    assert stdout.count("[ptv2] best accuracy") == 1       # the first start did not finish
    resumed, reference = losses(out), losses(ref_out)
    assert sorted(resumed) == list(range(1, MAX_STEPS + 1))
    for step in reference:
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-7), step


def test_bad_data_file_fails_with_its_line_and_is_not_requeued(slurm_cluster, tiny_glm_dir,
                                                              rte_data, tmp_path):  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    good = (rte_data / "train.jsonl").read_text().splitlines()
    (data / "train.jsonl").write_text("\n".join(good[:2] + ['{"premise": "cut off', *good[2:]])
                                      + "\n")
    shutil.copy(rte_data / "val.jsonl", data / "val.jsonl")
    logs = tmp_path / "logs"
    job = submit(_job_env(slurm_cluster, tiny_glm_dir, data, tmp_path / "run"), logs)
    info = wait_final(slurm_cluster, job, logs)
    stdout, stderr = log_text(logs, job)
    assert info["JobState"] == "FAILED", explain(slurm_cluster, job, info, logs)
    assert info["ExitCode"] == "2:0" and info["Restarts"] == "0"
    assert f"error: {data / 'train.jsonl'}:3: not valid JSON" in stdout + stderr
    assert "requeueing" not in stderr
    assert "training failed with exit code 2" in stderr
