"""Resumable checkpoints of the trainable state, written so that a crash never breaks resume and
a changed command never silently continues the wrong run.

Layout of ``OUT/checkpoints/step<N>/``: DeepSpeed's files for that step (frozen backbone
excluded), ``rng_rank<r>.pt`` (each rank's own RNG states), ``run_config.json`` (the settings
of the run that wrote it) and ``COMPLETE`` once every rank has finished writing.
``OUT/checkpoints/latest`` names the newest complete tag; it is replaced atomically (write a
temporary file, then rename) only after the ``COMPLETE`` marker exists, so a crash mid-save
leaves the previous checkpoint as "latest".

Resuming (``--resume auto`` or a tag directory) first compares the run configuration stored
with the checkpoint to the current one and refuses when a setting that changes the computation
differs (``IGNORABLE`` lists the ones that may change), then checks that every trainable
parameter of the current model is in the checkpoint with the same shape: DeepSpeed has to load
the module non-strictly (``exclude_frozen_parameters`` leaves the frozen weights out, and
``load_module_strict=True`` then fails on the missing backbone keys), so nothing else would
notice a prompt or head that the checkpoint does not hold.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from . import distributed as dist_env

COMPLETE = "COMPLETE"
LATEST = "latest"
RUN_CONFIG = "run_config.json"
RNG_FILE = "rng_rank{rank}.pt"

# Run settings that may differ between the run that wrote a checkpoint and the run resuming
# from it: where output goes, how often it is evaluated/logged/saved, how long to train
# (extending a run is legitimate), what is predicted at the end, and loader options that do not
# change a well-formed data set. Every other key of the run configuration must match.
IGNORABLE = frozenset({
    "output_dir", "resume",
    "eval_every", "log_every", "save_every", "eval_batch_size", "save_total_limit",
    "max_steps", "epochs",
    "test_file", "skip_bad_rows",
    "allow_unsafe_pickle",  # how a trusted GLM .pt file is read, not what it holds
    "deepspeed",            # the path; its contents are compared as zero_stage (and ds_config)
})

SINGLE_TASK_DEFAULTS = {"tasks": None, "task_sampling": "proportional", "init_prompt": None}
# options added later, left out at their defaults so that older checkpoints still resume
LATER_DEFAULTS = {"cpu_dropout": "fast", "prefix_init": "random", "backbone_dropout": None,
                  "lr_schedule": "linear", "lr_decay": 0.95}

# names for keys of the run configuration that are not command-line flags
_KEY_NAMES = {"world_size": "world size (ranks)", "zero_stage": "ZeRO stage",
              "ds_config": "DeepSpeed config"}


# ---- run configuration ---------------------------------------------------------------------
def make_run_config(args, *, world_size: int, zero_stage: int, **resolved) -> dict:
    """The run configuration stored with each checkpoint: every field of ``args`` (a
    TrainArgs), the world size and ZeRO stage, and ``resolved`` values that replace the
    flags' raw ones (e.g. ``lr=`` the learning rate actually used when --lr was left to its
    per-method default, ``precision=`` the precision resolved from "auto")."""
    config = dataclasses.asdict(args) if dataclasses.is_dataclass(args) else dict(vars(args))
    config.update(world_size=world_size, zero_stage=zero_stage, **resolved)
    # options added with multi-task training are left out of a single-task run's at their
    # defaults, so that single-task checkpoints written before them still resume
    if config.get("tasks") is None:
        for key, default in SINGLE_TASK_DEFAULTS.items():
            if config.get(key, default) == default:
                config.pop(key, None)
    for key, default in LATER_DEFAULTS.items():
        if config.get(key, default) == default:
            config.pop(key, None)
    return _jsonable(config)


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def config_differences(saved: dict, current: dict) -> list[str]:
    """One line per setting that changes the computation and differs, e.g.
    ``--lr 0.005 (checkpoint) vs 0.01 (now)``; empty when the checkpoint may be resumed."""
    saved, current = _jsonable(saved), _jsonable(current)
    missing = object()
    lines = []
    for key in sorted((set(saved) | set(current)) - IGNORABLE):
        old, new = saved.get(key, missing), current.get(key, missing)
        if old == new:
            continue
        lines.append(f"{_key_name(key)} {_show(old, missing)} (checkpoint) vs "
                     f"{_show(new, missing)} (now)")
    return lines


def _key_name(key: str) -> str:
    return _KEY_NAMES.get(key, "--" + key.replace("_", "-"))


def _show(value, missing) -> str:
    if value is missing:
        return "(not recorded)"
    if value is None:
        return "None (default)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def check_run_config(tag_dir: Path, run_config: dict) -> None:
    """Raise SystemExit("error: ...") unless the checkpoint in ``tag_dir`` was written by a run
    whose computation-changing settings equal ``run_config``."""
    path = tag_dir / RUN_CONFIG
    fresh = (f"To start fresh, rerun with --resume none (the new run's checkpoints replace "
             f"these in {tag_dir.parent}) or choose a new --output-dir.")
    if not path.is_file():
        raise SystemExit(f"error: cannot resume from {tag_dir}: it holds no {RUN_CONFIG} (it "
                         "was written by an older version of ptv2), so it cannot be checked "
                         f"against this run's settings. {fresh}")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot resume from {tag_dir}: unreadable {RUN_CONFIG}: {e}. "
                         f"{fresh}") from None
    differences = config_differences(saved, run_config)
    if differences:
        raise SystemExit(
            f"error: cannot resume from {tag_dir}: it was written by a run with different "
            "settings, and continuing it would mix two runs:\n"
            + "\n".join(f"  {line}" for line in differences)
            + f"\nRerun with the checkpoint's settings to continue it. {fresh}")


# ---- RNG, one file per rank -------------------------------------------------------------------
def rng_state() -> dict:
    """This rank's RNG states as tensors, lists and numbers (loadable with weights_only)."""
    from deepspeed.accelerator import get_accelerator

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    accel = get_accelerator()
    if accel.device_name() != "cpu":
        state["device"] = accel.get_rng_state()
    return state


def restore_rng(state: dict) -> None:
    from deepspeed.accelerator import get_accelerator

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "device" in state and get_accelerator().device_name() != "cpu":
        get_accelerator().set_rng_state(state["device"])


def save_rng(tag_dir: Path, rank: int) -> Path:
    tag_dir.mkdir(parents=True, exist_ok=True)
    path = tag_dir / RNG_FILE.format(rank=rank)
    torch.save(rng_state(), path)
    return path


def load_rng(tag_dir: Path, rank: int) -> dict:
    path = tag_dir / RNG_FILE.format(rank=rank)
    if not path.is_file():
        raise SystemExit(f"error: cannot resume from {tag_dir}: {path.name} is missing (each "
                         "rank's RNG state is saved separately); rerun with --resume none or "
                         "a new --output-dir")
    return torch.load(path, map_location="cpu", weights_only=True)


# ---- save ----------------------------------------------------------------------------------
def save(engine, directory: Path, train_state: dict, keep: int, run_config: dict) -> Path:
    """Collective: every rank calls it. Returns the tag directory."""
    step = int(train_state["step"])
    tag = f"step{step}"
    tag_dir = directory / tag
    # DeepSpeed's own `latest` is not written atomically; we write ours after the marker
    engine.save_checkpoint(str(directory), tag=tag, client_state={"state": train_state},
                           save_latest=False, exclude_frozen_parameters=True)
    save_rng(tag_dir, dist_env.rank())
    _barrier()
    if dist_env.is_main():
        _write_atomic(tag_dir / RUN_CONFIG, json.dumps(_jsonable(run_config), indent=2,
                                                       sort_keys=True) + "\n")
        (tag_dir / COMPLETE).write_text(f"{step}\n")
        _write_atomic(directory / LATEST, tag)
        tags = complete_tags(directory)
        # tags past this step belong to an abandoned run (--resume none into a used
        # directory): never resume from them, and do not let them crowd out this run's
        stale = [t for t in tags if _tag_step(t) > step]
        kept = [t for t in tags if t not in stale]
        old = kept[:-keep] if keep > 0 else []
        for name in stale + old:
            shutil.rmtree(directory / name, ignore_errors=True)
    _barrier()
    return tag_dir


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        import deepspeed.comm as dist

        dist.barrier()


def _tag_step(tag: str) -> int:
    return int(tag[4:]) if tag[4:].isdigit() else -1


def complete_tags(directory: Path) -> list[str]:
    """Tags with a COMPLETE marker, oldest first."""
    tags = [p.name for p in directory.glob("step*") if (p / COMPLETE).is_file()]
    return sorted(tags, key=_tag_step)


def find_resume_tag(directory: Path) -> str | None:
    """The tag ``latest`` names if it is complete, else the newest complete tag, else None."""
    if not directory.is_dir():
        return None
    latest = directory / LATEST
    if latest.is_file():
        tag = latest.read_text().strip()
        if tag and (directory / tag / COMPLETE).is_file():
            return tag
    tags = complete_tags(directory)
    return tags[-1] if tags else None


# ---- resume --------------------------------------------------------------------------------
def checkpoint_to_resume(directory: Path, resume_arg: str) -> Path | None:
    """The tag directory ``--resume`` (auto | none | a tag directory) selects, or None."""
    if resume_arg == "none":
        return None
    if resume_arg == "auto":
        tag = find_resume_tag(directory)
        return directory / tag if tag is not None else None
    path = Path(resume_arg)
    if not (path / COMPLETE).is_file():
        raise SystemExit(f"error: --resume {resume_arg}: not a complete checkpoint "
                         f"directory (no {COMPLETE} marker)")
    return path


def check_resume(directory: Path, resume_arg: str, run_config: dict) -> Path | None:
    """The checkpoint ``--resume`` selects after checking its run configuration (SystemExit
    "error: ..." when it differs); None when starting fresh. Cheap and collective-free: call
    it early, before building the model, to fail fast; ``resume`` calls it again."""
    tag_dir = checkpoint_to_resume(directory, resume_arg)
    if tag_dir is not None:
        check_run_config(tag_dir, run_config)
    return tag_dir


def resume(engine, directory: Path, resume_arg: str, train_state: dict,
           run_config: dict) -> str | None:
    """Load the checkpoint chosen by ``--resume`` (auto | none | a tag directory) into
    ``engine``, ``train_state`` and this rank's RNGs; returns its path, or None when starting
    fresh. Refuses (SystemExit "error: ...") a checkpoint written with different settings or
    without the current model's trainable parameters."""
    tag_dir = check_resume(directory, resume_arg, run_config)
    if tag_dir is None:
        return None
    check_trainable_parameters(engine, tag_dir)
    rng = load_rng(tag_dir, dist_env.rank())
    # non-strict: the frozen backbone is not in the checkpoint (exclude_frozen_parameters);
    # check_trainable_parameters did the strict check for the parameters that are
    path, client = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name,
                                          load_module_strict=False)
    if path is None or client is None:
        raise SystemExit(f"error: could not load checkpoint {tag_dir}")
    train_state.update(client["state"])
    restore_rng(rng)
    return str(tag_dir)


def saved_parameter_shapes(tag_dir: Path) -> dict[str, tuple[int, ...]]:
    """Name -> full shape of every parameter stored in the checkpoint's module states: the
    optimized parameters DeepSpeed records under ZeRO (``param_shapes``), else the tensors of
    the saved module state (buffers included)."""
    files = sorted(tag_dir.glob("*model_states.pt"))
    if not files:
        raise SystemExit(f"error: cannot resume from {tag_dir}: no DeepSpeed model states file")
    states = torch.load(files[0], map_location="cpu", weights_only=False, mmap=True)
    groups = states.get("param_shapes")
    if groups:
        if isinstance(groups, dict):
            groups = [groups]
        return {name: tuple(shape) for group in groups for name, shape in group.items()}
    return {name: tuple(t.shape) for name, t in (states.get("module") or {}).items()
            if torch.is_tensor(t)}


def check_trainable_parameters(engine, tag_dir: Path) -> None:
    """Refuse a checkpoint that lacks a trainable parameter of the current model, holds one
    with another shape, or holds parameters the current model does not train."""
    module = getattr(engine, "module", engine)
    aliases: dict[int, list[str]] = {}   # tied parameters have several names
    params = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
        params[id(p)] = p
    buffers = {name for name, _ in module.named_buffers()}
    saved = saved_parameter_shapes(tag_dir)
    problems, known = [], set(buffers)
    for key, names in aliases.items():
        p = params[key]
        if not p.requires_grad:
            continue
        known.update(names)
        shape = tuple(getattr(p, "ds_shape", p.shape))
        found = [n for n in names if n in saved]
        if not found:
            problems.append(f"{names[0]}: missing from the checkpoint")
        elif tuple(saved[found[0]]) != shape:
            problems.append(f"{found[0]}: shape {list(saved[found[0]])} (checkpoint) vs "
                            f"{list(shape)} (now)")
    problems += [f"{name}: in the checkpoint but not trained now" for name in saved
                 if name not in known]
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"]
                                 if len(problems) > 10 else [])
        raise SystemExit(
            f"error: cannot resume from {tag_dir}: its trainable parameters do not match this "
            "model's:\n" + "\n".join(f"  {p}" for p in shown)
            + "\nRerun with --resume none or choose a new --output-dir.")
