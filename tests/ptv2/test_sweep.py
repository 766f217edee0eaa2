"""``ptv2 sweep``: grid expansion, run names, summaries, resume, failures, plots."""
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ptv2_ds import recipes
from ptv2_ds.cli.main import main
from ptv2_ds.errors import UserError
from ptv2_ds.sweep import load_sweep, mean_std, run_name, run_sweep
from ptv2_ds.trainer.guards import claim_output_dir

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GRID = """
output_dir: {out}
base: {{task: sst2, model: minilm, epochs: 2}}
grid:
  method: [finetune, ptv2]
  prefix_len: [8, 16]
  seed: [1, 2]
by_method:
  finetune: {{lr: 5e-5, prefix_len: 16}}
overrides:
  - when: {{method: ptv2, prefix_len: 8}}
    set: {{lr: 2e-2}}
  - when: {{prefix_len: [16]}}
    set: {{reparam: mlp}}
exclude:
  - {{method: ptv2, prefix_len: 16, seed: 2}}
"""


def test_grid_expansion_by_option_overrides_and_exclude(tmp_path):
    sweep = load_sweep(write(tmp_path, GRID.format(out=tmp_path / "runs")))
    names = [r.name for r in sweep.runs]
    assert names == ["method=finetune__prefix_len=16__seed=1",
                     "method=finetune__prefix_len=16__seed=2",
                     "method=ptv2__prefix_len=8__seed=1", "method=ptv2__prefix_len=8__seed=2",
                     "method=ptv2__prefix_len=16__seed=1"]
    assert sweep.duplicates == 2  # finetune's prefix_len 8 cells became its 16 cells
    by_name = {r.name: r for r in sweep.runs}
    ft = by_name["method=finetune__prefix_len=16__seed=2"].options
    assert ft == {"task": "sst2", "model": "minilm", "epochs": 2.0, "method": "finetune",
                  "prefix_len": 16, "seed": 2, "lr": 5e-5, "reparam": "mlp",
                  "output_dir": str(tmp_path / "runs" / "method=finetune__prefix_len=16__seed=2")}
    assert by_name["method=ptv2__prefix_len=8__seed=1"].options["lr"] == 2e-2
    assert "reparam" not in by_name["method=ptv2__prefix_len=8__seed=1"].options
    assert by_name["method=ptv2__prefix_len=16__seed=1"].options["reparam"] == "mlp"
    assert "lr" not in by_name["method=ptv2__prefix_len=16__seed=1"].options
    assert by_name["method=ptv2__prefix_len=16__seed=1"].cell == {
        "method": "ptv2", "prefix_len": 16, "seed": 1}


def test_run_names_are_deterministic_and_file_safe(tmp_path):
    text = GRID.format(out=tmp_path / "runs")
    first = [r.name for r in load_sweep(write(tmp_path, text, "a.yaml")).runs]
    assert first == [r.name for r in load_sweep(write(tmp_path, text, "b.yaml")).runs]
    assert run_name({"lr": 5e-5, "epochs": 3.0, "gradient_checkpointing": True}) == \
        "lr=5e-05__epochs=3__gradient_checkpointing=true"
    a, b = run_name({"model": "/m/bert base"}), run_name({"model": "/m/bert-base"})
    assert a.startswith("model=-m-bert-base-") and a != b and "/" not in a and " " not in a
    assert a == run_name({"model": "/m/bert base"})
    long = run_name({"train_file": "x" * 400})
    assert len(long) <= 150 and long == run_name({"train_file": "x" * 400})
    assert run_name({}) == "run"
    assert run_name({"tasks": ["sst2", "conll04"], "seed": 1}) == "tasks=sst2,conll04__seed=1"


@pytest.mark.parametrize("text, message", [
    ("base: {prefx_len: 3}", r"sweep.yaml: base: unknown train option 'prefx_len' \(did you "
                             r"mean 'prefix_len'\?\)"),
    ("grid: {methods: [ptv2]}", r"sweep.yaml: grid: unknown train option 'methods' \(did you "
                                r"mean 'method'\?\)"),
    ("by_metod: {ptv2: {lr: 1}}", r"by_metod: unknown train option 'metod' \(did you mean "
                                  r"'method'\?\)"),
    ("overrides: [{when: {method: ptv2}, set: {learning_rate: 1}}]",
     r"overrides\[0\]: set: unknown train option 'learning_rate'"),
    ("gird: {seed: [1]}", r"unknown sweep key 'gird' \(did you mean 'grid'\?\)"),
    ("grid: {method: [magic]}", r"grid: option 'method' must be one of"),
    ("grid: {epochs: [many]}", r"grid: option 'epochs' must be a number, got 'many'"),
    ("base: {output_dir: x}", r"base: 'output_dir' is set by the sweep"),
    ("plot: {x: prefix_length}", r"plot: x 'prefix_length' is not a grid option"),
])
def test_unknown_keys_and_bad_values_are_refused(tmp_path, text, message):
    body = f"output_dir: {tmp_path}\n{text}"
    with pytest.raises(UserError, match=message):
        load_sweep(write(tmp_path, body))


def test_unknown_key_from_the_cli_is_exit_2(tmp_path, capsys):
    path = write(tmp_path, f"output_dir: {tmp_path}\ngrid: {{prefx_len: [1]}}\n")
    assert main(["sweep", "--config", str(path), "--dry-run"]) == 2
    assert "unknown train option 'prefx_len'" in capsys.readouterr().err


def fake_run(directory: Path, best: float, best_step: int, final_step: int, wall: float,
             finished: bool = True) -> None:
    directory.mkdir(parents=True)
    metrics = {"task": "sst2", "method": "ptv2", "best": {"accuracy": best, "step": best_step},
               "final": {"accuracy": best - 0.01, "step": final_step} if finished else None,
               "trainable_params": 100, "history": [{"step": best_step, "accuracy": best}]}
    (directory / "metrics.json").write_text(json.dumps(metrics))
    (directory / "sweep_run.json").write_text(json.dumps({"exit_code": 0, "wall_s": wall}))


def test_summary_mean_std_over_seeds_from_hand_made_runs(tmp_path):
    out = tmp_path / "runs"
    path = write(tmp_path, f"""
output_dir: {out}
base: {{task: sst2, epochs: 4}}
grid:
  prefix_len: [8, 16]
  reparam: [embedding, mlp]
  seed: [1, 2, 3]
plot: {{x: prefix_len, series: reparam, file: length.png}}
""")
    scores = {(8, "embedding"): [0.80, 0.90, 0.85], (16, "embedding"): [0.70, 0.72, 0.74],
              (8, "mlp"): [0.60, 0.61, 0.62], (16, "mlp"): [0.50, 0.5, None]}
    for (p, reparam), values in scores.items():
        for seed, value in zip((1, 2, 3), values):
            if value is not None:  # 100 steps for 4 epochs: best at step 50 = 2 epochs
                fake_run(out / f"prefix_len={p}__reparam={reparam}__seed={seed}", value, 50, 100,
                         60.0 * seed)
    assert run_sweep(str(path), summarize_only=True) == 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 12
    row = rows[0]
    assert (row["run"], row["prefix_len"], row["reparam"], row["seed"], row["status"],
            row["metric"], row["best"], row["best_step"], row["epochs_to_best"],
            row["wall_s"]) == ("prefix_len=8__reparam=embedding__seed=1", "8", "embedding",
                               "1", "done", "accuracy", "0.8", "50", "2.0", "60.0")
    assert rows[-1]["status"] == "pending" and rows[-1]["best"] == ""
    table = (out / "summary.md").read_text()
    # sample std of (0.80, 0.90, 0.85) = 0.05; wall = mean of 1, 2, 3 minutes
    assert "| 8 | embedding | accuracy | 0.8500 ± 0.0500 | 3/3 | 2.0 | 2.0 |" in table
    assert "| 16 | embedding | accuracy | 0.7200 ± 0.0200 | 3/3 |" in table
    assert "| 16 | mlp | accuracy | 0.5000 ± 0.0000 | 2/3 |" in table
    assert (out / "length.png").stat().st_size > 1000  # matplotlib is installed in dev
    assert list((out / "hparams").rglob("events.out.tfevents.*"))


def test_depth_sweep_reads_prompted_layers_from_the_artifacts(tmp_path):
    out = tmp_path / "runs"
    path = write(tmp_path, f"""
output_dir: {out}
base: {{task: sst2}}
grid: {{prefix_layers: ["0-1", "last:2", all, "1,3"]}}
plot: {{x: prompted_layers, series: layers_from, file: depth.png}}
""")
    layers = {"0-1": [0, 1], "last:2": [4, 5], "all": [0, 1, 2, 3, 4, 5], "1,3": [1, 3]}
    for spec, chosen in layers.items():
        run_dir = out / run_name({"prefix_layers": spec})
        fake_run(run_dir, 0.7 + len(chosen) / 100, 1, 1, 1.0)
        (run_dir / "artifact").mkdir()
        (run_dir / "artifact" / "ptv2_artifact.json").write_text(json.dumps(
            {"prompt": {"prefix_layers": chosen}, "backbone": {"num_layers": 6}}))
    assert run_sweep(str(path), summarize_only=True) == 0
    rows = {r["prefix_layers"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert {k: (r["prompted_layers"], r["layers_from"]) for k, r in rows.items()} == {
        "0-1": ("2", "bottom"), "last:2": ("2", "top"), "all": ("6", "all"),
        "1,3": ("2", "other")}
    assert (out / "depth.png").stat().st_size > 1000


def test_mean_std_known_values():
    assert mean_std([0.5]) == (0.5, None)
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))


def test_plot_points_group_series_and_sort_numeric_x():
    from ptv2_ds.plots import series_points
    rows = [{"status": "done", "best": b, "x": x, "s": s} for b, x, s in [
        (0.5, "16", "a"), (0.7, "4", "a"), (0.9, "4", "a"), (0.1, "4", "b")]]
    rows.append({"status": "failed", "best": 0.0, "x": "4", "s": "b"})
    points = series_points(rows, "x", "s")
    assert points["a"][0] == (4.0, pytest.approx(0.8), pytest.approx(math.sqrt(0.02)))
    assert points["a"][1] == (16.0, 0.5, 0.0)
    assert points["b"] == [(4.0, 0.1, 0.0)]


def test_missing_matplotlib_is_a_clear_message(tmp_path, monkeypatch, capsys):
    import ptv2_ds.sweep as sweep_module
    out = tmp_path / "runs"
    path = write(tmp_path, f"output_dir: {out}\ngrid: {{seed: [1]}}\nplot: {{x: seed}}\n")
    fake_run(out / "seed=1", 0.8, 1, 1, 1.0)
    monkeypatch.setattr(sweep_module, "plots_available", lambda: False)
    assert main(["sweep", "--config", str(path), "--summarize-only"]) == 2
    assert "needs matplotlib" in capsys.readouterr().err
    assert (out / "summary.md").is_file()  # the tables are written first


TINY = """
output_dir: {out}
base:
  model: {model}
  task: sst2
  train_file: {train}
  validation_file: {dev}
  max_steps: 2
  batch_size: 8
  max_seq_len: 32
  lr: 1e-2
  log_every: 1
grid:
  seed: [1, 2]
"""


def test_tiny_real_sweep_summary_resume_and_stale_options(tmp_path, tiny_bert_dir, sst2_tiny,
                                                           capsys):
    out = tmp_path / "runs"
    path = write(tmp_path, TINY.format(out=out, model=tiny_bert_dir, **sst2_tiny))
    assert main(["sweep", "--config", str(path)]) == 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["run"] for r in rows] == ["seed=1", "seed=2"]
    for row in rows:
        metrics = json.loads((out / row["run"] / "metrics.json").read_text())
        assert row["status"] == "done" and metrics["final"]["step"] == 2
        assert float(row["best"]) == pytest.approx(metrics["best"]["accuracy"])
        assert row["best_step"] == str(metrics["best"]["step"])
        assert yaml.safe_load((out / row["run"] / "run.yaml").read_text())["seed"] == \
            int(row["seed"])
        assert "task=sst2 method=ptv2" in (out / row["run"] / "train.log").read_text()
    mean, std = mean_std([float(r["best"]) for r in rows])
    assert f"| accuracy | {mean:.4f} ± {std:.4f} | 2/2 |" in (out / "summary.md").read_text()
    logs = {r["run"]: (out / r["run"] / "train.log").read_text() for r in rows}

    capsys.readouterr()
    assert main(["sweep", "--config", str(path)]) == 0  # resume: nothing left to run
    assert "(2 finished, 0 to run)" in capsys.readouterr().out
    assert logs == {r: (out / r / "train.log").read_text() for r in logs}

    # a finished run is not silently reused under other options
    path.write_text(path.read_text().replace("lr: 1e-2", "lr: 2e-2"))
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "seed=1: lr: 0.01 (finished run) vs 0.02 (now)" in err


def test_stale_check_compares_the_settings_the_trainer_resolved(tmp_path, tiny_bert_dir,
                                                                 sst2_tiny, capsys, monkeypatch):
    out = tmp_path / "runs"
    path = write(tmp_path, TINY.format(out=out, model=tiny_bert_dir, **sst2_tiny))
    assert main(["sweep", "--config", str(path)]) == 0
    # pinning an option to the value the runs already resolved it to changes nothing
    path.write_text(path.read_text().replace("  lr: 1e-2\n", "  lr: 1e-2\n  prefix_dropout: 0.1\n"
                                             "  prefix_init: random\n"))
    capsys.readouterr()
    assert main(["sweep", "--config", str(path)]) == 0
    assert "(2 finished, 0 to run)" in capsys.readouterr().out
    # a per-task default that changed since the runs finished makes them stale, though no
    # option of the YAML changed
    path.write_text(path.read_text().replace("  prefix_dropout: 0.1\n", ""))
    monkeypatch.setitem(recipes.UNRULED, "prefix_dropout", 0.0)
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 run(s) in" in err
    assert "seed=1: prefix_dropout: 0.1 (finished run) vs 0.0 (now)" in err
    # an unfinished run with a checkpoint is checked before it is resumed
    monkeypatch.setitem(recipes.UNRULED, "prefix_dropout", 0.1)
    metrics = json.loads((out / "seed=2" / "metrics.json").read_text())
    (out / "seed=2" / "metrics.json").write_text(json.dumps({**metrics, "final": None}))
    path.write_text(path.read_text().replace("lr: 1e-2", "lr: 2e-2"))
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "seed=2: lr: 0.01 (checkpoint) vs 0.02 (now)" in err
    assert "seed=1: lr: 0.01 (finished run) vs 0.02 (now)" in err
    # without checkpoints a finished run is compared by its run.yaml
    path.write_text(path.read_text().replace("lr: 2e-2", "lr: 1e-2"))
    (out / "seed=2" / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(out / "seed=1" / "checkpoints")
    path.write_text(path.read_text().replace("max_steps: 2", "max_steps: 3"))
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "seed=1: max_steps: 2 (finished run) vs 3 (now)" in err
    assert "seed=2: max_steps: 2 (finished run) vs 3 (now)" in err


def test_failed_run_is_reported_and_the_sweep_goes_on(tmp_path, tiny_bert_dir, sst2_tiny,
                                                      capsys):
    out = tmp_path / "runs"
    text = TINY.format(out=out, model=tiny_bert_dir, **sst2_tiny) + "by_seed: {1: {" \
        f"train_file: {tmp_path / 'missing.tsv'}}}}}\n"
    path = write(tmp_path, text)
    # seed 2 finished earlier (hand-made): the sweep runs seed 1 only, which fails
    fake_run(out / "seed=2", 0.75, 2, 2, 5.0)
    (out / "seed=2" / "run.yaml").write_text(yaml.safe_dump(
        load_sweep(path).runs[1].options))
    assert main(["sweep", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"1 run(s) failed:\n  seed=1: {out / 'seed=1' / 'train.log'}" in err
    assert "missing.tsv" in (out / "seed=1" / "train.log").read_text()
    assert json.loads((out / "seed=1" / "sweep_run.json").read_text())["exit_code"] == 2
    rows = {r["run"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["seed=1"]["status"] == "failed" and rows["seed=2"]["status"] == "done"
    table = (out / "summary.md").read_text()
    assert "| accuracy | 0.7500 | 1/2 |" in table and "Failed runs" in table


@pytest.mark.parametrize("name", ["paper_table", "ablation_length", "ablation_depth",
                                  "conll04_why", "conll04_seeds"])
def test_benchmark_sweeps_dry_run(name, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["sweep", "--config", f"benchmarks/{name}.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"benchmarks/{name}.yaml:" in out and "to run" in out


def test_only_selects_runs(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    config = "benchmarks/paper_table.yaml"
    assert main(["sweep", "--config", config, "--dry-run", "--only", "task=sst2",
                 "--only", "method=ptv2,finetune"]) == 0
    out = capsys.readouterr().out
    assert "2 runs in runs/paper_table (of 12, --only)" in out
    listed = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(listed) == 2 and all("task=sst2" in line for line in listed)
    assert "method=prompt" not in out
    for bad, message in [("task", "expected OPTION=VALUE"), ("method=bogus", "must be one of"),
                         ("seed=7", "no run of benchmarks/paper_table.yaml matches"),
                         ("colour=red", "unknown train option")]:
        assert main(["sweep", "--config", config, "--dry-run", "--only", bad]) == 2
        assert message in capsys.readouterr().err


def test_sigterm_to_the_sweep_checkpoints_its_running_run_and_resumes(tmp_path, tiny_bert_dir,
                                                                      sst2_tiny):
    """``kill SWEEP``: the running ``ptv2 train`` gets the signal, checkpoints and ends (no
    orphan keeps writing its directory), the sweep stops, and a rerun resumes the run."""
    out = tmp_path / "runs"
    text = TINY.format(out=out, model=tiny_bert_dir, **sst2_tiny).replace(
        "max_steps: 2", "max_steps: 100000\n  eval_every: 100000").replace(
        "seed: [1, 2]", "seed: [1]")
    path = write(tmp_path, text)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}
    sweep = subprocess.Popen([sys.executable, "-m", "ptv2_ds.cli.main", "sweep", "--config",
                              str(path)], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    log = out / "seed=1" / "train_log.jsonl"
    deadline = time.time() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 2):
        assert sweep.poll() is None and time.time() < deadline, sweep.stderr.read()
        time.sleep(0.5)
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=120) == 130
    state = json.loads((out / "seed=1" / "sweep_run.json").read_text())
    assert state["exit_code"] == 75  # the trainer's "preempted, checkpoint written"
    assert (out / "seed=1" / "checkpoints" / "latest").is_file()
    # the run's directory is free again: nothing holds its lock
    claim_output_dir(out / "seed=1").close()
