"""``ptv2 sweep``: a grid of ``ptv2 train`` runs from one YAML file, then a summary.

    output_dir: runs/ablation_length        # one sub-directory per run
    prepare:                                # shell commands run first ({python} = this Python)
      - {run: "{python} benchmarks/prepare_paper_data.py runs/x/data", creates: runs/x/data}
    base: {model: minilm, task: sst2}       # train options every run gets
    grid:                                   # lists of train options: their product is the grid
      method: [prompt, ptv2]
      prefix_len: [8, 16]
      seed: [1, 2]
    by_method: {prompt: {lr: 1e-2}}         # by_<option>: options for runs with that value
    overrides:                              # then the general form, in order
      - {when: {method: ptv2, prefix_len: 8}, set: {lr: 2e-2}}
    exclude: [{method: prompt, prefix_len: 8}]   # cells not to run
    metric: accuracy                        # default: each task's main metric
    plot: {x: prefix_len, series: method, file: length.png}

Options of a run: base, then its grid values, then the matching ``by_*`` entries, then the
matching ``overrides``; ``exclude`` drops cells. A run's directory name is made from its grid
options' final values (``method=ptv2__prefix_len=8__seed=1``), so it is the same on every
invocation; cells whose final values coincide are one run. Each run is a ``ptv2 train
--config RUN/run.yaml`` subprocess of the same Python (output in RUN/train.log), so no
DeepSpeed or torch state passes from one run to the next. A run whose metrics.json has a
``final`` entry is finished and skipped; an interrupted one is rerun with the same command and
the trainer resumes it from its checkpoints. Failed runs are recorded and the sweep goes on;
the exit code is 1 when any failed.

Outputs in output_dir: summary.csv (one row per run), summary.md (best score per cell, mean
± std over the ``seed`` values), hparams/ (TensorBoard hparams of every run) and the plot.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from . import config as cfg
from .errors import UserError

TOP_KEYS = ("output_dir", "prepare", "base", "grid", "overrides", "exclude", "metric", "plot",
            "description")
PLOT_KEYS = ("x", "series", "file", "metric", "title")
# set by the sweep for each run, so never by the YAML
RESERVED = ("output_dir",)
# differences that do not change what a finished run computed
HARMLESS = frozenset({"resume", "log_every", "save_every", "save_total_limit",
                      "eval_batch_size", "skip_bad_rows", "allow_unsafe_pickle"})
# columns computed from a run's artifact for sweeps over --prefix-layers (Figure 4 style)
DERIVED = ("prompted_layers", "layers_from")
# a launcher's variables would make each child think it is one rank of a bigger world
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT")
RUN_FILE, LOG_FILE, STATE_FILE = "run.yaml", "train.log", "sweep_run.json"


@dataclass
class Run:
    name: str
    cell: dict      # grid option -> its final value, in grid order (seed included)
    options: dict   # every train option the YAML sets for the run, output_dir included
    dir: Path


@dataclass
class Sweep:
    path: Path
    output_dir: Path
    base: dict
    grid: dict                      # option -> list of values
    by: dict                        # option -> {value: options}
    overrides: list                 # [(when, set)]
    exclude: list                   # [when]
    prepare: list                   # [{"run": str, "creates": str | None}]
    metric: str | None
    plot: dict | None
    runs: list = field(default_factory=list)
    duplicates: int = 0


# ---- reading and checking the YAML -------------------------------------------------------------
TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(cfg.TrainArgs)}


def check_option(key, value, where: str) -> tuple[str, object]:
    """(option name, value converted to the option's type) for one YAML entry; a UserError
    naming ``where`` (file and section) for an unknown option or a bad value."""
    name = str(key).replace("-", "_")
    if name not in TRAIN_FIELDS:
        raise UserError(f"{where}: unknown train option {key!r}"
                        f"{cfg.did_you_mean(name, TRAIN_FIELDS)}; any `ptv2 train` option is "
                        "accepted (`ptv2 train --help`), with dashes or underscores")
    if name in RESERVED:
        raise UserError(f"{where}: {key!r} is set by the sweep for each run (the top-level "
                        "output_dir holds one directory per run); remove it")
    f = TRAIN_FIELDS[name]
    if isinstance(value, (list, tuple)) and name in ("verbalizer", "prefix_layers"):
        value = ",".join(str(v) for v in value)
    if value is not None:
        if f.type in ("bool", bool):
            if not isinstance(value, bool):
                raise UserError(f"{where}: option {key!r} must be true or false, got {value!r}")
        elif cfg._type_of(f) is not str:
            if isinstance(value, bool):
                raise UserError(f"{where}: option {key!r} must be a number, got {value!r}")
            try:
                value = cfg._type_of(f)(value)
            except (TypeError, ValueError):
                raise UserError(f"{where}: option {key!r} must be a number, got {value!r}") \
                    from None
        elif isinstance(value, (int, float)):
            value = str(value)  # e.g. prefix_layers: 0; lists/mappings (--tasks files) stay
    choices = f.metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise UserError(f"{where}: option {key!r} must be one of {choices}, got {value!r}")
    return name, value


def check_options(mapping, where: str) -> dict:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise UserError(f"{where}: expected a mapping of train options to values, got "
                        f"{type(mapping).__name__}")
    return dict(check_option(k, v, where) for k, v in mapping.items())


def check_when(mapping, where: str) -> dict:
    """A condition: option -> value or list of accepted values."""
    if not isinstance(mapping, dict) or not mapping:
        raise UserError(f"{where}: expected a non-empty mapping of options to values")
    out = {}
    for key, value in mapping.items():
        values = value if isinstance(value, list) and str(key).replace("-", "_") not in (
            "prefix_layers", "verbalizer") else [value]
        checked = [check_option(key, v, where) for v in values]
        out[checked[0][0]] = [v for _, v in checked]
    return out


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep YAML and expand its grid into runs (nothing is run)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with base, grid and output_dir")
    for key in data:
        if str(key) in TOP_KEYS or str(key).startswith("by_"):
            continue
        raise UserError(f"{path}: unknown sweep key {key!r}{cfg.did_you_mean(str(key), TOP_KEYS)}"
                        f"; sweep keys are {', '.join(TOP_KEYS)} and by_<option>")
    if not data.get("output_dir"):
        raise UserError(f"{path}: output_dir is missing (the directory that gets one "
                        "sub-directory per run)")
    base = check_options(data.get("base"), f"{path}: base")
    grid_in = data.get("grid") or {}
    if not isinstance(grid_in, dict):
        raise UserError(f"{path}: grid: expected a mapping of train options to lists of values")
    grid = {}
    for key, values in grid_in.items():
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise UserError(f"{path}: grid: {key!r} has no values")
        checked = [check_option(key, v, f"{path}: grid") for v in values]
        unique = []
        for _, v in checked:  # values may be lists or mappings (unhashable): compare them
            if v not in unique:
                unique.append(v)
        grid[checked[0][0]] = unique
    by = {}
    for key, table in data.items():
        if not str(key).startswith("by_"):
            continue
        name = str(key)[3:].replace("-", "_")
        if name not in TRAIN_FIELDS:
            raise UserError(f"{path}: {key}: unknown train option {name!r}"
                            f"{cfg.did_you_mean(name, TRAIN_FIELDS)}; by_<option> names a "
                            "train option")
        if not isinstance(table, dict):
            raise UserError(f"{path}: {key}: expected a mapping of {name} values to options")
        by[name] = {check_option(name, value, f"{path}: {key}")[1]:
                    check_options(options, f"{path}: {key}: {value}")
                    for value, options in table.items()}
    overrides = []
    for i, entry in enumerate(data.get("overrides") or []):
        where = f"{path}: overrides[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"when", "set"} or "set" not in entry:
            raise UserError(f"{where}: expected {{when: {{option: value}}, set: {{option: "
                            f"value}}}}, got {entry!r}")
        when = check_when(entry["when"], where + ": when") if entry.get("when") else {}
        overrides.append((when, check_options(entry["set"], where + ": set")))
    exclude = [check_when(e, f"{path}: exclude[{i}]")
               for i, e in enumerate(data.get("exclude") or [])]
    prepare = []
    for i, step in enumerate(data.get("prepare") or []):
        if isinstance(step, str):
            step = {"run": step}
        if not isinstance(step, dict) or not step.get("run") or set(step) - {"run", "creates"}:
            raise UserError(f"{path}: prepare[{i}]: expected a command or {{run: command, "
                            f"creates: path}}, got {step!r}")
        prepare.append({"run": str(step["run"]), "creates": step.get("creates")})
    plot = data.get("plot")
    if plot is not None:
        if not isinstance(plot, dict) or "x" not in plot or set(plot) - set(PLOT_KEYS):
            raise UserError(f"{path}: plot: expected {{x: option, series: option, file: "
                            f"name.png}}, got {plot!r}")
        columns = set(grid) | set(DERIVED)
        for axis in ("x", "series"):
            value = plot.get(axis)
            if value is not None and str(value).replace("-", "_") not in columns:
                raise UserError(f"{path}: plot: {axis} {value!r} is not a grid option"
                                f"{cfg.did_you_mean(str(value), columns)} (grid: "
                                f"{', '.join(grid)}; derived: {', '.join(DERIVED)})")
        plot = {k: (str(v).replace("-", "_") if k in ("x", "series") else v)
                for k, v in plot.items()}
        plot.setdefault("file", "plot.png")
    sweep = Sweep(path=path, output_dir=Path(str(data["output_dir"])), base=base, grid=grid,
                  by=by, overrides=overrides, exclude=exclude, prepare=prepare,
                  metric=data.get("metric"), plot=plot)
    sweep.runs, sweep.duplicates = expand(sweep)
    return sweep


def _matches(options: dict, when: dict) -> bool:
    return all(options.get(k) in values for k, values in when.items())


def expand(sweep: Sweep) -> tuple[list[Run], int]:
    """The runs of the grid, in grid order (the product of the grid's lists, the first option
    varying slowest), and the number of cells dropped as duplicates of an earlier one."""
    keys = list(sweep.grid)
    runs: dict[str, Run] = {}
    duplicates = 0
    for combo in itertools.product(*(sweep.grid[k] for k in keys)):
        cell = dict(zip(keys, combo))
        options = {**sweep.base, **cell}
        for name, table in sweep.by.items():
            value = options.get(name)
            if isinstance(value, (str, int, float, bool)) and value in table:
                options.update(table[value])
        for when, values in sweep.overrides:
            if _matches(options, when):
                options.update(values)
        if any(_matches(options, when) for when in sweep.exclude):
            continue
        final_cell = {k: options.get(k) for k in keys}
        name = run_name(final_cell)
        if name in runs:
            if runs[name].options != {**options, "output_dir": str(sweep.output_dir / name)}:
                raise UserError(
                    f"{sweep.path}: the cells {cell} and {runs[name].cell} end with the same "
                    f"grid values ({name}) but different options; make the overrides tell "
                    "them apart")
            duplicates += 1
            continue
        options["output_dir"] = str(sweep.output_dir / name)
        runs[name] = Run(name, final_cell, options, sweep.output_dir / name)
    return list(runs.values()), duplicates


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


def run_name(cell: dict) -> str:
    """A directory name that says what a run is: ``key=value`` pairs joined by ``__`` in grid
    order; characters a file name should not hold become ``-`` with a short hash of the value
    added, and very long names are cut and hashed, so names stay unique and deterministic."""
    if not cell:
        return "run"
    parts = []
    for key, value in cell.items():
        text = _text(value)
        safe = re.sub(r"[^A-Za-z0-9._,+:-]", "-", text)
        if safe != text:
            safe += "-" + hashlib.sha1(text.encode()).hexdigest()[:6]
        parts.append(f"{key}={safe}")
    name = "__".join(parts)
    if len(name) > 150:
        name = name[:120] + "-" + hashlib.sha1(name.encode()).hexdigest()[:10]
    return name


# ---- state of a run ----------------------------------------------------------------------------
def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_finished(run: Run) -> bool:
    metrics = read_json(run.dir / "metrics.json")
    return bool(metrics and metrics.get("final"))


def status(run: Run) -> str:
    """done, failed (the last attempt exited non-zero), unfinished (started) or pending."""
    if is_finished(run):
        return "done"
    state = read_json(run.dir / STATE_FILE) or {}
    if state.get("exit_code") not in (None, 0):
        return "failed"
    return "unfinished" if (run.dir / "metrics.json").exists() or state else "pending"


def recorded_run_config(run: Run) -> dict | None:
    """The run configuration the trainer stored with the run's newest complete checkpoint
    (every option as it resolved them: per-task defaults, lr, precision), or None."""
    directory = run.dir / "checkpoints"
    if not directory.is_dir():
        return None
    from .trainer import checkpointing  # imports DeepSpeed: only when there is a checkpoint

    tag = checkpointing.find_resume_tag(directory)
    return None if tag is None else read_json(directory / tag / checkpointing.RUN_CONFIG)


def expected_run_config(args: cfg.TrainArgs, recorded: dict) -> dict:
    """The run configuration ``ptv2 train`` would store for ``args`` (resolved TrainArgs) in
    the world ``recorded`` ran in (ranks, ZeRO stage and an "auto" precision are decided at
    run time, from the launcher and the DeepSpeed file)."""
    from . import recipes
    from .builder import learning_rate
    from .trainer import checkpointing

    args = copy.copy(args)  # prefix_init_for_zero_stage may change it
    zero_stage = recorded.get("zero_stage", 0)
    recipes.prefix_init_for_zero_stage(args, zero_stage)
    return checkpointing.make_run_config(
        args, world_size=recorded.get("world_size", 1), zero_stage=zero_stage,
        lr=learning_rate(args),
        precision=recorded.get("precision") if args.precision == "auto" else args.precision)


def stale_differences(run: Run, args: cfg.TrainArgs) -> list[str]:
    """For a run that finished, or stopped after writing a checkpoint: the settings it ran
    with that differ from what the YAML gives now (``args``: its resolved options). Compared
    as the trainer resolved them when a checkpoint recorded that, so a changed per-task default
    counts and pinning an option to the value the run already had does not; a finished run
    without checkpoints is compared by the options of its run.yaml."""
    finished = is_finished(run)
    recorded = recorded_run_config(run)
    if recorded is not None:
        return _differences(recorded, expected_run_config(args, recorded),
                            "finished run" if finished else "checkpoint", "(not recorded)")
    if not finished or not (run.dir / RUN_FILE).is_file():
        return []
    try:
        saved = yaml.safe_load((run.dir / RUN_FILE).read_text()) or {}
    except yaml.YAMLError:
        return []
    return _differences(saved, run.options, "finished run", None)


def _differences(then: dict, now: dict, where: str, missing) -> list[str]:
    """``key: value (where) vs value (now)`` for every key that may change a run's result."""
    return [f"{key}: {then.get(key, missing)!r} ({where}) vs {now.get(key, missing)!r} (now)"
            for key in sorted((set(then) | set(now)) - HARMLESS - {"output_dir"})
            if then.get(key, missing) != now.get(key, missing)]


def train_command(run: Run) -> list[str]:
    return [sys.executable, "-m", "ptv2_ds.cli.main", "train", "--config",
            str(run.dir / RUN_FILE)]


def write_run_file(run: Run, sweep: Sweep) -> None:
    run.dir.mkdir(parents=True, exist_ok=True)
    header = (f"# written by `ptv2 sweep --config {sweep.path}` for run {run.name}\n"
              f"# rerun alone: ptv2 train --config {run.dir / RUN_FILE}\n")
    (run.dir / RUN_FILE).write_text(header + yaml.safe_dump(run.options, sort_keys=False))


_RUNNING: set[subprocess.Popen] = set()  # the train processes of the runs in progress


def _forward_sigterm(signum, frame) -> None:
    """SIGTERM to the sweep (``kill``, a scheduler) goes to every running ``ptv2 train``, which
    checkpoints after its current step and exits, then stops the sweep like Ctrl-C; without
    this the runs would go on as orphans, and a rerun would find their directories in use."""
    for proc in list(_RUNNING):
        proc.send_signal(signal.SIGTERM)
    raise KeyboardInterrupt


def execute(run: Run) -> tuple[int, float]:
    """Run one ``ptv2 train`` process (output appended to RUN/train.log); returns the exit code
    and its wall time. The wall time of all attempts adds up in RUN/sweep_run.json."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    command = train_command(run)
    state = read_json(run.dir / STATE_FILE) or {}
    t0 = time.perf_counter()
    with open(run.dir / LOG_FILE, "a") as log:
        log.write(f"\n===== {datetime.now(timezone.utc).isoformat(timespec='seconds')} "
                  f"{shlex.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _RUNNING.add(proc)
        try:
            code = proc.wait()
        finally:
            _RUNNING.discard(proc)
    wall = time.perf_counter() - t0
    state = {"exit_code": code, "wall_s": state.get("wall_s", 0.0) + wall,
             "attempts": state.get("attempts", 0) + 1, "command": shlex.join(command)}
    (run.dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return code, wall


def run_prepare(sweep: Sweep) -> None:
    for step in sweep.prepare:
        if step["creates"] and Path(step["creates"]).exists():
            print(f"[sweep] prepare: {step['creates']} exists, skipping: {step['run']}")
            continue
        command = step["run"].replace("{python}", shlex.quote(sys.executable))
        print(f"[sweep] prepare: {command}", flush=True)
        code = subprocess.call(command, shell=True)
        if code != 0:
            raise UserError(f"{sweep.path}: prepare step failed (exit {code}): {command}")


# ---- the command --------------------------------------------------------------------------------
def parse_only(only: str | list | None) -> dict:
    """``--only OPTION=V1,V2`` (repeatable) as a condition like an override's ``when``."""
    if not only:
        return {}
    condition = {}
    for item in ([only] if isinstance(only, str) else only):
        key, sep, values = str(item).partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UserError(f"--only {item!r}: expected OPTION=VALUE[,VALUE...], e.g. "
                            "--only task=sst2")
        parts = [values] if key.strip().replace("-", "_") == "prefix_layers" else \
            values.split(",")
        condition.update(check_when({key.strip(): [yaml.safe_load(v.strip()) for v in parts]},
                                    "--only"))
    return condition


def run_sweep(path: str, *, dry_run: bool = False, summarize_only: bool = False,
              jobs: int = 1, only: str | list | None = None) -> int:
    """``ptv2 sweep``: returns the exit code (0 all runs finished, 1 some failed). ``only``
    (``--only``) restricts which runs are listed and run; the summary reads every finished
    run of the grid."""
    from tqdm.auto import tqdm

    sweep = load_sweep(path)
    condition = parse_only(only)
    selected = [run for run in sweep.runs if _matches(run.options, condition)]
    if condition and not selected:
        raise UserError(f"--only {' '.join(only if isinstance(only, list) else [only])}: "
                        f"no run of {sweep.path} matches")
    resolved = {run.name: cfg.TrainArgs(**{k: v for k, v in run.options.items()})
                for run in sweep.runs}  # every run's options make a valid TrainArgs
    stale = {} if summarize_only else {
        run.name: d for run in sweep.runs if (d := stale_differences(run, resolved[run.name]))}
    if stale:
        lines = [f"  {name}: " + "; ".join(d) for name, d in stale.items()]
        raise UserError(f"{sweep.path}: {len(stale)} run(s) in {sweep.output_dir} (finished, or "
                        "stopped after a checkpoint) were run with other settings than the YAML "
                        "now gives:\n" + "\n".join(lines)
                        + "\ndelete those run directories to rerun them, or choose another "
                          "output_dir")
    todo = [run for run in selected if not is_finished(run)]
    print(f"[sweep] {sweep.path}: {len(selected)} runs in {sweep.output_dir} "
          + (f"(of {len(sweep.runs)}, --only) " if condition else "")
          + f"({len(selected) - len(todo)} finished, {len(todo)} to run"
          + (f"; {sweep.duplicates} duplicate cells dropped" if sweep.duplicates else "") + ")")
    if dry_run:
        for step in sweep.prepare:
            command = step["run"].replace("{python}", sys.executable)
            print(f"  prepare: {command}" + (f" (skipped if {step['creates']} exists)"
                                             if step["creates"] else ""))
        for run in selected:
            args = resolved[run.name]
            print(f"  [{status(run):10s}] {run.name}  (epochs {args.epochs:g}, lr "
                  f"{'method default' if args.lr is None else format(args.lr, 'g')}, "
                  f"batch {args.batch_size})")
        if todo:
            print(f"  command of the first run to go: {shlex.join(train_command(todo[0]))}")
        return 0
    if not summarize_only:
        if sweep.plot is not None and not plots_available():
            print(f"[sweep] warning: {PLOTS_MISSING}; the runs go ahead, the plot will be "
                  "missing", file=sys.stderr)
        sweep.output_dir.mkdir(parents=True, exist_ok=True)
        run_prepare(sweep)
        bar = tqdm(total=len(todo), desc="sweep", unit="run", dynamic_ncols=True)
        try:
            previous = signal.signal(signal.SIGTERM, _forward_sigterm)
        except ValueError:  # not the main thread (an embedding program): no handler
            previous = None
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {}
            for run in todo:
                write_run_file(run, sweep)
                futures[pool.submit(execute, run)] = run
            try:
                for future in as_completed(futures):
                    run = futures[future]
                    code, wall = future.result()
                    bar.update(1)
                    if code == 0 and is_finished(run):
                        tqdm.write(f"[sweep] done {run.name} ({wall / 60:.1f} min)")
                    else:
                        tqdm.write(f"[sweep] FAILED {run.name} (exit {code}): "
                                   f"{run.dir / LOG_FILE}")
            except KeyboardInterrupt:
                # the running children got the same Ctrl-C (or the forwarded SIGTERM); start
                # no further run, and leave the pool only when they have ended
                for future in futures:
                    future.cancel()
                bar.close()
                print(f"\n[sweep] interrupted; rerun `ptv2 sweep --config {sweep.path}` to "
                      "resume", file=sys.stderr)
                return 130
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
        bar.close()
    rows = summarize(sweep, resolved)
    failed = [run for run in sweep.runs if status(run) == "failed"]
    missing_plot = None
    if sweep.plot is not None:
        missing_plot = write_plot(sweep, rows)
    if failed:
        print(f"[sweep] {len(failed)} run(s) failed:", file=sys.stderr)
        for run in failed:
            print(f"  {run.name}: {run.dir / LOG_FILE}", file=sys.stderr)
        return 1
    if missing_plot:
        raise UserError(missing_plot)
    return 0


# ---- summary ------------------------------------------------------------------------------------
def main_metric(task: str, metrics: dict, override: str | None) -> str | None:
    if override:
        return override
    try:
        from .tasks import build_task

        return build_task(task).main_metric
    except Exception:  # noqa: BLE001 - an unknown task name: the first reported metric
        names = [k for k in metrics if k != "step"]
        return names[0] if names else None


def _layers(run: Run) -> dict:
    """prompted_layers / layers_from from the run's artifact (which layers got a prefix)."""
    meta = read_json(run.dir / "artifact" / "ptv2_artifact.json")
    if not meta:
        return {}
    layers = list(meta.get("prompt", {}).get("prefix_layers") or [])
    total = meta.get("backbone", {}).get("num_layers")
    n = len(layers)
    if not total or not n:
        side = "none"
    elif n == total:
        side = "all"
    elif layers == list(range(n)):
        side = "bottom"
    elif layers == list(range(total - n, total)):
        side = "top"
    else:
        side = "other"
    return {"prompted_layers": n, "layers_from": side}


def run_row(run: Run, args, metric_override: str | None) -> dict:
    """One summary.csv row: the cell, seed, status, best score, when it was reached, time."""
    metrics = read_json(run.dir / "metrics.json") or {}
    best = metrics.get("best") or {}
    final = metrics.get("final") or {}
    metric = main_metric(args.task, best, metric_override)
    state = read_json(run.dir / STATE_FILE) or {}
    row = {"run": run.name, **{k: _text(v) for k, v in run.cell.items()}}
    row.setdefault("seed", args.seed)
    row.update({"task": args.task, "method": args.method, "status": status(run),
                "metric": metric, "best": best.get(metric), "best_step": best.get("step"),
                "final_step": final.get("step"), "epochs": args.epochs,
                "epochs_to_best": None, "evaluations": len(metrics.get("history") or []),
                "trainable_params": metrics.get("trainable_params"),
                "wall_s": round(state["wall_s"], 1) if "wall_s" in state else None,
                "dir": str(run.dir)})
    if final.get("step") and best.get("step") is not None and not args.max_steps:
        # the trainer runs ceil(epochs x steps per epoch) steps: this undoes it
        row["epochs_to_best"] = round(best["step"] * args.epochs / final["step"], 2)
    if "prefix_layers" in run.cell:
        row.update({k: None for k in DERIVED})
        row.update(_layers(run))
    return row


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(sweep: Sweep, resolved: dict) -> list[dict]:
    """Write summary.csv, summary.md and the TensorBoard hparams; returns the csv rows."""
    rows = [run_row(run, resolved[run.name], sweep.metric) for run in sweep.runs]
    sweep.output_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(sweep.output_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    (sweep.output_dir / "summary.md").write_text(markdown_table(sweep, rows))
    write_hparams(sweep, rows)
    print(f"[sweep] wrote {sweep.output_dir / 'summary.csv'} and "
          f"{sweep.output_dir / 'summary.md'}")
    return rows


def cell_key(sweep: Sweep, row: dict) -> tuple:
    return tuple(row[k] for k in sweep.grid if k != "seed")


def grouped(sweep: Sweep, rows: list[dict]) -> list[tuple[dict, list[dict]]]:
    """Finished rows grouped by cell (every grid option but the seed), in grid order."""
    groups: dict[tuple, list[dict]] = {}
    firsts: dict[tuple, dict] = {}
    for row in rows:
        key = cell_key(sweep, row)
        firsts.setdefault(key, row)
        groups.setdefault(key, [])
        if row["status"] == "done" and row["best"] is not None:
            groups[key].append(row)
    return [(firsts[k], groups[k]) for k in firsts]


def markdown_table(sweep: Sweep, rows: list[dict]) -> str:
    keys = [k for k in sweep.grid if k != "seed"]
    seeds = sorted({str(r["seed"]) for r in rows})
    done = sum(r["status"] == "done" for r in rows)
    lines = [f"# Sweep {sweep.path}", "",
             f"`ptv2 sweep --config {sweep.path}`; {done} of {len(rows)} runs finished; summary "
             f"written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
             f"Best dev score of each run, mean ± sample std over seeds ({', '.join(seeds)}); "
             "epochs to best = epochs until the best evaluation; wall = minutes per run.", ""]
    header = keys + ["metric", "best (mean ± std)", "seeds", "epochs to best", "wall min"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for first, group in grouped(sweep, rows):
        scores = [float(r["best"]) for r in group]
        if scores:
            mean, std = mean_std(scores)
            score = f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")
            to_best = [r["epochs_to_best"] for r in group if r["epochs_to_best"] is not None]
            to_best_text = f"{sum(to_best) / len(to_best):.1f}" if to_best else ""
            walls = [r["wall_s"] for r in group if r["wall_s"] is not None]
            wall_text = f"{sum(walls) / len(walls) / 60:.1f}" if walls else ""
        else:
            score, to_best_text, wall_text = "(no finished run)", "", ""
        total = sum(1 for r in rows if cell_key(sweep, r) == cell_key(sweep, first))
        lines.append("| " + " | ".join([str(first[k]) for k in keys] + [
            str(first["metric"]), score, f"{len(scores)}/{total}", to_best_text, wall_text])
            + " |")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "Failed runs (see their train.log): " +
                  ", ".join(f"`{r['run']}`" for r in failed)]
    return "\n".join(lines) + "\n"


def write_hparams(sweep: Sweep, rows: list[dict]) -> None:
    """TensorBoard hparams (one entry per finished run) under OUT/hparams, rewritten each time:
    ``tensorboard --logdir OUT/hparams`` (HPARAMS tab)."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    directory = sweep.output_dir / "hparams"
    shutil.rmtree(directory, ignore_errors=True)
    finished = [r for r in rows if r["status"] == "done" and r["best"] is not None]
    if not finished:
        return
    writer = SummaryWriter(str(directory))
    for row in finished:
        hparams = {k: _hparam(row[k]) for k in [*sweep.grid, "task", "method", "seed"]
                   if k in row}
        metrics = {f"hparam/best_{row['metric']}": float(row["best"])}
        if row["epochs_to_best"] is not None:
            metrics["hparam/epochs_to_best"] = float(row["epochs_to_best"])
        writer.add_hparams(hparams, metrics, run_name=row["run"])
    writer.close()


def _hparam(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---- plot ----------------------------------------------------------------------------------------
PLOTS_MISSING = ("the sweep's plot needs matplotlib, an optional extra: pip install -e "
                 "'.[plots]' in the repository (or pip install matplotlib), then ptv2 sweep "
                 "--config FILE --summarize-only")


def plots_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_plot(sweep: Sweep, rows: list[dict]) -> str | None:
    """Draw the YAML's plot next to summary.md; returns the missing-matplotlib message instead
    of raising, so that the tables are written first."""
    if not plots_available():
        return PLOTS_MISSING
    from .plots import plot_summary

    out = sweep.output_dir / str(sweep.plot["file"])
    plot_summary(rows, x=sweep.plot["x"], series=sweep.plot.get("series"), out=out,
                 metric=sweep.plot.get("metric"),
                 title=sweep.plot.get("title") or f"{sweep.path.name}")
    print(f"[sweep] wrote {out}")
    return None
