"""Multi-task P-Tuning v2 (MPT-2): ``ptv2 train --tasks``, one shared prompt and one head per
task, on a classification (SST-2) and a tagging (CoNLL-04) set cut from the real data.

One module-scoped run (temperature sampling, a checkpoint after every step) is read by most
tests: both losses fall, each head changes only in the steps of its own task, the best step is
the best mean, ``ptv2 eval --task`` reproduces each task's best, a resumed run repeats it
exactly, and a single task continues from its shared prompt loaded exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ptv2_ds.cli.main import main
from ptv2_ds.errors import UserError
from ptv2_ds.tasks import Task
from ptv2_ds.tasks.mixture import Mixture, epoch_counts, epoch_schedule, parse_sampling
from tests.conftest import REPO, SHARED_DATA, SST2_SAMPLE

STEPS = 30
# sst2: 24 rows = 3 batches of 8; conll04: 48 sentences = 55 windows of <= 64 tokens = 7
# batches. temperature:3 -> weights 24^(1/3) : 55^(1/3) of 10 batches an epoch = 4.31 : 5.69
# -> 4 sst2 + 6 conll04 (sst2 crosses into its next pass inside an epoch, conll04 spans two)
EPOCH_COUNTS = {"sst2": 4, "conll04": 6}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("mpt_data")
    lines = (SST2_SAMPLE / "train.tsv").read_text().splitlines()
    (out / "sst2_train.tsv").write_text("\n".join(lines[:25]) + "\n")
    (out / "sst2_dev.tsv").write_text("\n".join([lines[0]] + lines[25:41]) + "\n")
    for name, count in (("train", 48), ("dev", 16)):
        text = (SHARED_DATA / "conll04" / f"{name}.txt").read_text()
        sentences = [s for s in text.split("\n\n") if s.strip()][:count]
        (out / f"conll04_{name}.txt").write_text("\n\n".join(sentences) + "\n")
    return {"sst2": {"train": str(out / "sst2_train.tsv"), "dev": str(out / "sst2_dev.tsv")},
            "conll04": {"train": str(out / "conll04_train.txt"),
                        "dev": str(out / "conll04_dev.txt")}}


def files(data, tasks=("sst2", "conll04")) -> list[str]:
    out = []
    for t in tasks:
        out += ["--train-file", f"{t}={data[t]['train']}",
                "--validation-file", f"{t}={data[t]['dev']}"]
    return out


def mpt_args(model, data, out, *extra) -> list[str]:
    return ["train", "--tasks", "sst2,conll04", "--model", model, *files(data),
            "--output-dir", str(out), "--batch-size", "8", "--max-seq-len", "64",
            "--prefix-len", "4", "--lr", "5e-2", "--max-steps", str(STEPS), "--eval-every", "10",
            "--log-every", "1", "--task-sampling", "temperature:3", "--seed", "3", *extra]


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def mpt_run(tiny_bert_dir, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mpt") / "run"
    assert main(mpt_args(tiny_bert_dir, data, out, "--save-every", "1",
                         "--save-total-limit", "100")) == 0
    return out


def module_state(out: Path, step: int) -> dict[str, torch.Tensor]:
    path = out / "checkpoints" / f"step{step}" / "mp_rank_00_model_states.pt"
    return torch.load(path, map_location="cpu", weights_only=False)["module"]

def assert_heads_move_only_on_their_steps(out, tasks: dict, last_step: int) -> None:
    """Between consecutive checkpoints each task's head changes iff that step was its task's."""
    before = module_state(out, 1)
    for step in range(2, last_step + 1):
        after = module_state(out, step)
        for task in ("sst2", "conll04"):
            keys = [k for k in before if k.startswith(f"heads.{task}.")]
            changed = any(not torch.equal(before[k], after[k]) for k in keys)
            assert changed == (tasks[step] == task), (step, task)
        before = after



# ---- sampling --------------------------------------------------------------------------------
def test_epoch_counts_proportional_and_temperature():
    sizes, batches = {"a": 300, "b": 100}, {"a": 30, "b": 10}
    assert epoch_counts(sizes, batches) == {"a": 30, "b": 10}
    # p ~ n^(1/2): sqrt(300) : sqrt(100) = 17.32 : 10 of 40 batches = 25.36 : 14.64
    assert epoch_counts(sizes, batches, "temperature:2") == {"a": 25, "b": 15}
    assert epoch_counts(sizes, batches, "temperature:1") == {"a": 30, "b": 10}
    assert epoch_counts(sizes, batches, "temperature:1e9") == {"a": 20, "b": 20}
    # three tasks, largest remainder: 40 * (0.5, 0.3, 0.2) with sizes 5:3:2
    assert epoch_counts({"a": 5, "b": 3, "c": 2}, {"a": 13, "b": 13, "c": 14},
                        "temperature:1") == {"a": 20, "b": 12, "c": 8}
    for bad in ("temperature:0", "temperature:-1", "temperature:x", "uniform"):
        with pytest.raises(UserError, match="--task-sampling"):
            parse_sampling(bad)


def test_epoch_schedule_is_a_function_of_seed_and_epoch():
    counts = {"a": 5, "b": 3}
    s = epoch_schedule(counts, seed=1, epoch=0)
    assert sorted(s) == ["a"] * 5 + ["b"] * 3
    assert s == epoch_schedule(counts, seed=1, epoch=0)
    others = [epoch_schedule(counts, seed=1, epoch=e) for e in range(1, 6)]
    assert any(o != s for o in others)
    assert epoch_schedule({"a": 4}, seed=1, epoch=3) == ["a"] * 4


class ListTask(Task):
    """A task whose features are ints: a batch is their tensor."""

    def __init__(self, name):
        self.name = name

    def collate(self, features, backbone):
        return {"ids": torch.tensor(features)}


def mixture(sampling="temperature:2", datasets=None, **kw) -> Mixture:
    datasets = datasets or {"a": list(range(10)), "b": list(range(100, 125))}
    return Mixture(datasets, {n: ListTask(n) for n in datasets}, None, 4, seed=3,
                   sampling=sampling, **kw)


def test_mixture_resumes_anywhere_and_reads_each_set_in_whole_passes():
    m = mixture()
    # a: 10 rows = 3 batches, b: 25 = 7; sqrt(10) : sqrt(25) of 10 batches -> 4 : 6
    assert m.batches == {"a": 3, "b": 7} and m.counts == {"a": 4, "b": 6} and len(m) == 10
    epochs = [[(i, n, b["ids"].tolist()) for i, n, b in m.epoch(e)] for e in range(4)]
    for e, full in enumerate(epochs):
        assert [n for _, n, _ in full] == m.schedule(e)
        for start in range(len(full) + 1):  # resuming at any batch repeats the rest exactly
            assert [(i, n, b["ids"].tolist()) for i, n, b in m.epoch(e, start)] == full[start:]
    for name, data, per_pass in (("a", range(10), 3), ("b", range(100, 125), 7)):
        seen = [b for full in epochs for _, n, b in full if n == name]
        assert len(seen) == 4 * m.counts[name]
        for k in range(len(seen) // per_pass):  # every pass: each row once, a new order
            rows = [x for b in seen[k * per_pass:(k + 1) * per_pass] for x in b]
            assert sorted(rows) == list(data)
        assert seen[:per_pass] != seen[per_pass:2 * per_pass]


def test_one_task_mixture_is_the_plain_loader():
    from torch.utils.data import DistributedSampler

    from ptv2_ds.tasks import make_loader

    data = list(range(21))
    m = mixture("proportional", {"a": data})
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=3)
    loader = make_loader(data, ListTask("a"), None, 4, sampler=sampler, seed=3)
    for e in range(3):
        sampler.set_epoch(e)
        assert [b["ids"].tolist() for _, _, b in m.epoch(e)] == \
            [b["ids"].tolist() for b in loader]


def test_ranks_get_the_same_schedule_and_their_own_share():
    ranks = [mixture(world=2, rank=r) for r in (0, 1)]
    # per rank a: 5 rows = 2 batches, b: 13 = 4; sqrt(10) : sqrt(25) of 6 -> 2 : 4
    assert ranks[0].counts == ranks[1].counts == {"a": 2, "b": 4}
    for e in range(3):
        got = [list(m.epoch(e)) for m in ranks]
        assert [n for _, n, _ in got[0]] == [n for _, n, _ in got[1]] == ranks[0].schedule(e)
        # epoch e is pass e of a on every rank: together the ranks read each row once
        rows = [x for share in got for _, n, b in share if n == "a" for x in b["ids"].tolist()]
        assert sorted(rows) == list(range(10))


# ---- arguments -------------------------------------------------------------------------------
def test_task_arguments_are_normalised():
    from ptv2_ds.config import TrainArgs

    a = TrainArgs(tasks="sst2, conll04", train_file=["sst2=x.tsv", "conll04=y.txt"],
                  validation_file={"conll04": "d.txt"})
    assert a.tasks == ["sst2", "conll04"] and a.task is None
    assert a.train_file == {"sst2": "x.tsv", "conll04": "y.txt"}
    assert a.validation_file == {"conll04": "d.txt"} and a.test_file is None
    one = TrainArgs(task="conll04", train_file=["conll04=y.txt"])
    assert one.tasks is None and one.train_file == "y.txt"
    assert TrainArgs(tasks=["rte"]).task == "rte" and TrainArgs().task == "sst2"
    assert TrainArgs(train_file=["plain=path.tsv"]).train_file == "plain=path.tsv"


def test_run_config_of_single_task_runs_is_unchanged():
    from ptv2_ds.config import TrainArgs
    from ptv2_ds.trainer.checkpointing import config_differences, make_run_config

    single = make_run_config(TrainArgs(task="rte", lr=0.01), world_size=1, zero_stage=0)
    assert not {"tasks", "task_sampling", "init_prompt"} & set(single)
    multi = make_run_config(TrainArgs(tasks="rte,sst2", lr=0.01), world_size=1, zero_stage=0)
    other = make_run_config(TrainArgs(tasks="rte,sst2", lr=0.01, task_sampling="temperature:2"),
                            world_size=1, zero_stage=0)
    assert multi["tasks"] == ["rte", "sst2"]
    assert config_differences(multi, other) == [
        "--task-sampling proportional (checkpoint) vs temperature:2 (now)"]


@pytest.mark.parametrize("extra,message", [
    (["--task", "sst2", "--tasks", "sst2,conll04"],
     "--task sst2 and --tasks sst2,conll04 are both given"),
    (["--tasks", "sst2,conll04", "--train-file", "rte=x.jsonl"],
     "--train-file rte=x.jsonl names task rte, which is not in --tasks sst2,conll04"),
    (["--tasks", "sst2,conll04", "--train-file", "x.tsv"],
     "--train-file x.tsv: with --tasks give TASK=PATH"),
    (["--tasks", "sst2,conll04", "--train-file", "sst2=a", "--train-file", "sst2=b"],
     "--train-file is given twice for task sst2"),
    (["--task", "sst2", "--train-file", "conll04=x.txt"],
     "names task conll04, but this run trains --task sst2"),
    (["--tasks", "sst2,nope"], "--tasks: unknown task 'nope'"),
    (["--tasks", "sst2,conll04", "--task-sampling", "temperature:0"],
     "--task-sampling 'temperature:0'"),
])
def test_bad_task_arguments_exit_2_with_the_reason(extra, message, tmp_path, capsys):
    assert main(["train", "--output-dir", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_task_without_hub_data_needs_its_files(tiny_bert_dir, data, tmp_path, capsys):
    code = main(["train", "--tasks", "sst2,conll04", "--model", tiny_bert_dir,
                 *files(data, ["sst2"]), "--output-dir", str(tmp_path / "o")])
    assert code == 2
    assert ("task conll04 has no Hugging Face hub data set: give --train-file conll04=PATH"
            in capsys.readouterr().err)
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_yaml_mapping_of_files(tiny_bert_dir, data, tmp_path, capsys):
    """A YAML mapping names the files; a key that is not in tasks is an error naming it."""
    import yaml

    config = {"tasks": ["sst2", "conll04"],
              "train_file": {t: data[t]["train"] for t in ("sst2", "conll04")},
              "validation_file": {t: data[t]["dev"] for t in ("sst2", "conll04")},
              "model": tiny_bert_dir, "batch_size": 8, "max_seq_len": 64, "prefix_len": 4,
              "max_steps": 2, "eval_every": 2, "output_dir": str(tmp_path / "run")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 0
    meta = json.loads((tmp_path / "run" / "artifact" / "ptv2_artifact.json").read_text())
    assert meta["tasks"] == ["sst2", "conll04"] and meta["format_version"] == 2
    config["train_file"]["rte"] = "x.jsonl"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "names task rte, which is not in --tasks sst2,conll04" in capsys.readouterr().err


# ---- the MPT-2 run ---------------------------------------------------------------------------
def test_mpt2_lowers_both_losses(mpt_run):
    rows = log_rows(mpt_run)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for task in ("sst2", "conll04"):
        seen = [r["loss"] for r in rows if r["task"] == task]
        assert sum(seen[-3:]) / 3 < sum(seen[:3]) / 3, (task, seen)


def test_tasks_follow_the_seeded_schedule(mpt_run):
    tasks = [r["task"] for r in log_rows(mpt_run)]
    expected = [t for e in range(3) for t in epoch_schedule(EPOCH_COUNTS, seed=3, epoch=e)]
    assert tasks == expected
    assert tasks[:10].count("sst2") == 4 and tasks[:10].count("conll04") == 6


def test_each_head_changes_only_in_its_own_steps(mpt_run):
    tasks = {r["step"]: r["task"] for r in log_rows(mpt_run)}
    before = module_state(mpt_run, 1)
    heads = {t: [k for k in before if k.startswith(f"heads.{t}.")] for t in ("sst2", "conll04")}
    assert all(heads.values()) and "deep_prompt.table" in before
    for step in range(2, STEPS + 1):
        after = module_state(mpt_run, step)
        for task, keys in heads.items():
            changed = any(not torch.equal(before[k], after[k]) for k in keys)
            assert changed == (tasks[step] == task), (step, task, tasks[step])
        assert not torch.equal(before["deep_prompt.table"], after["deep_prompt.table"])
        before = after


def test_heads_stay_apart_under_zero2(tiny_bert_dir, data, tmp_path):
    """ZeRO-2 hands an unused head a zero gradient (not none), which Adam's momentum alone
    would turn into an update: the trainer gives idle heads a learning rate of 0."""
    config = json.loads((REPO / "ds_configs" / "cpu.json").read_text())
    config["zero_optimization"] = {"stage": 2}
    (tmp_path / "zero2.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    args = mpt_args(tiny_bert_dir, data, out, "--deepspeed", str(tmp_path / "zero2.json"),
                    "--precision", "fp32", "--save-every", "1", "--save-total-limit", "100")
    args[args.index("--max-steps") + 1] = args[args.index("--eval-every") + 1] = "6"
    assert main(args) == 0
    tasks = {r["step"]: r["task"] for r in log_rows(out)}
    assert set(tasks.values()) == {"sst2", "conll04"}
    assert_heads_move_only_on_their_steps(out, tasks, last_step=6)


def test_best_is_the_best_mean_and_eval_reproduces_each_task(mpt_run, data, capsys):
    metrics = json.loads((mpt_run / "metrics.json").read_text())
    assert metrics["tasks"] == ["sst2", "conll04"] and metrics["main_metric"] == "mean"
    best = metrics["best"]
    assert best["mean"] == max(h["mean"] for h in metrics["history"])
    assert best["mean"] == pytest.approx((best["sst2/accuracy"] + best["conll04/f1"]) / 2)
    artifact = str(mpt_run / "artifact")
    for task in ("sst2", "conll04"):
        capsys.readouterr()
        assert main(["eval", "--artifact", artifact, "--task", task,
                     "--data", data[task]["dev"]]) == 0
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        ours = {k.split("/", 1)[1]: v for k, v in best.items() if k.startswith(task + "/")}
        assert {k: printed[k] for k in ours} == ours  # exactly: the same computation
    preds = mpt_run.parent / "conll04_preds.jsonl"
    assert main(["predict", "--artifact", artifact, "--task", "conll04",
                 "--input", data["conll04"]["dev"], "--output", str(preds)]) == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 16 and all(len(r["tokens"]) == len(r["tags"]) for r in rows)


def test_multitask_artifact_layout_and_task_errors(mpt_run, data, capsys):
    artifact = mpt_run / "artifact"
    meta = json.loads((artifact / "ptv2_artifact.json").read_text())
    assert meta["multitask"] and meta["tasks"] == ["sst2", "conll04"]
    assert meta["task_meta"]["sst2"]["labels"] == ["0", "1"]
    assert meta["task_meta"]["conll04"]["family"] == "tagging"
    names = set(load_file(str(artifact / "model.safetensors")))
    assert "deep_prompt.table" in names and not [n for n in names if n.startswith("head.")]
    assert {n.split(".")[1] for n in names if n.startswith("heads.")} == {"sst2", "conll04"}
    capsys.readouterr()
    assert main(["eval", "--artifact", str(artifact), "--data", data["sst2"]["dev"]]) == 2
    assert "multi-task artifact (tasks sst2, conll04): pass --task" in capsys.readouterr().err
    assert main(["eval", "--artifact", str(artifact), "--task", "rte",
                 "--data", data["sst2"]["dev"]]) == 2
    assert "has no head for task 'rte'; its tasks are sst2, conll04" in capsys.readouterr().err


def test_resume_repeats_the_run_exactly(mpt_run, tiny_bert_dir, data, tmp_path):
    """From a checkpoint inside epoch 1 (sst2 in its second pass, conll04 mid-pass) the
    resumed run trains on the same tasks and batches: the same losses."""
    start = 13
    out = tmp_path / "resumed"
    assert main(mpt_args(tiny_bert_dir, data, out, "--resume",
                         str(mpt_run / "checkpoints" / f"step{start}"))) == 0
    resumed = log_rows(out)
    expected = [r for r in log_rows(mpt_run) if r["step"] > start]
    assert [r["step"] for r in resumed] == [r["step"] for r in expected]
    assert [r["task"] for r in resumed] == [r["task"] for r in expected]
    for a, b in zip(resumed, expected):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7), a["step"]


# ---- continuing one task ---------------------------------------------------------------------
def test_continue_one_task_loads_prompt_and_head_exactly(mpt_run, tiny_bert_dir, data, tmp_path,
                                                         capsys):
    """At --lr 0 nothing moves: the continued run's artifact is the shared prompt and the
    task's head of the MPT-2 artifact, bit for bit."""
    out = tmp_path / "conll04"
    capsys.readouterr()
    assert main(["train", "--task", "conll04", "--model", tiny_bert_dir,
                 "--train-file", data["conll04"]["train"],
                 "--validation-file", data["conll04"]["dev"], "--output-dir", str(out),
                 "--init-prompt", str(mpt_run / "artifact"), "--prefix-len", "4",
                 "--batch-size", "8", "--max-seq-len", "64", "--lr", "0", "--max-steps", "2",
                 "--eval-every", "2"]) == 0
    assert "task conll04: head loaded from" in capsys.readouterr().out
    shared = load_file(str(mpt_run / "artifact" / "model.safetensors"))
    single = load_file(str(out / "artifact" / "model.safetensors"))
    assert torch.equal(single["deep_prompt.table"], shared["deep_prompt.table"])
    heads = {k[len("heads.conll04."):]: v for k, v in shared.items()
             if k.startswith("heads.conll04.")}
    assert heads and set(heads) == {k[len("head."):] for k in single if k.startswith("head.")}
    for k, v in heads.items():
        assert torch.equal(single["head." + k], v)
    meta = json.loads((out / "artifact" / "ptv2_artifact.json").read_text())
    assert meta["task"] == "conll04" and meta["format_version"] == 1


def test_init_prompt_for_a_task_not_in_the_mix(mpt_run, tiny_bert_dir):
    from ptv2_ds.builder import build_model
    from ptv2_ds.config import ModelArgs
    from ptv2_ds.inference import init_from_artifact
    from ptv2_ds.tasks import build_task

    task = build_task("rte")
    net = build_model(ModelArgs(model=tiny_bert_dir, prefix_len=4), task)
    head_before = {k: v.clone() for k, v in net.head.state_dict().items()}
    notes = init_from_artifact(net, str(mpt_run / "artifact"), {"rte": task})
    assert notes == [f"task rte was not in {mpt_run / 'artifact'} (tasks sst2, conll04): its "
                     "head starts fresh"]
    shared = load_file(str(mpt_run / "artifact" / "model.safetensors"))
    assert torch.equal(net.deep_prompt.table.detach(), shared["deep_prompt.table"])
    assert all(torch.equal(v, head_before[k]) for k, v in net.head.state_dict().items())


@pytest.mark.parametrize("backbone,extra,message", [
    ("tiny_bert_dir", ["--prefix-len", "8"], "its prompt has shape [4, "),
    ("tiny_roberta_dir", ["--prefix-len", "4"], "its prompt was trained on backbone "),
    ("tiny_bert_dir", ["--prefix-len", "4", "--method", "prompt"],
     "trained with --method ptv2; this run uses --method prompt"),
])
def test_init_prompt_refuses_another_shape_or_backbone(request, mpt_run, data, tmp_path, capsys,
                                                       backbone, extra, message):
    model = request.getfixturevalue(backbone)
    capsys.readouterr()
    assert main(["train", "--task", "conll04", "--model", model,
                 "--train-file", data["conll04"]["train"],
                 "--validation-file", data["conll04"]["dev"], "--output-dir",
                 str(tmp_path / "o"), "--init-prompt", str(mpt_run / "artifact"),
                 "--batch-size", "8", "--max-seq-len", "64", "--max-steps", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    if backbone == "tiny_roberta_dir":  # both sides named
        meta = json.loads((mpt_run / "artifact" / "ptv2_artifact.json").read_text())
        assert meta["backbone"]["fingerprint"] in err and model in err


# ---- two ranks -------------------------------------------------------------------------------
@pytest.mark.multirank
def test_two_rank_zero2_mpt2(tiny_bert_dir, data, tmp_path):
    """2 CPU ranks under ZeRO-2: both ranks train the same task in each step (a head changes
    only in its own task's steps, which a rank on another task would break) and the run
    follows the seeded schedule."""
    from ptv2_ds.trainer.distributed import free_port

    config = json.loads((REPO / "ds_configs" / "cpu.json").read_text())
    config["zero_optimization"] = {"stage": 2}
    (tmp_path / "zero2.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    steps = 8
    args = mpt_args(tiny_bert_dir, data, out, "--deepspeed", str(tmp_path / "zero2.json"),
                    "--precision", "fp32", "--save-every", "1", "--save-total-limit", "100")
    args[args.index("--batch-size") + 1] = "4"     # 2 ranks x 4 = the same global batch
    args[args.index("--max-steps") + 1] = str(steps)
    args[args.index("--eval-every") + 1] = str(steps)
    launcher = [str(Path(sys.executable).with_name("deepspeed")), "--num_gpus", "2",
                "--master_port", str(free_port()), "--module", "ptv2_ds.cli.main"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launcher + args, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tasks = {r["step"]: r["task"] for r in log_rows(out)}
    # per rank: sst2 12 rows -> 3 batches of 4, conll04 28 windows -> 7: the same 4 : 6 mix
    assert [tasks[s] for s in range(1, steps + 1)] == \
        epoch_schedule(EPOCH_COUNTS, seed=3, epoch=0)[:steps]
    assert_heads_move_only_on_their_steps(out, tasks, last_step=steps)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "mean" in metrics["best"] and "conll04/f1" in metrics["best"]
