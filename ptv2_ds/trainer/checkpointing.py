"""Resumable checkpoints of the trainable state, written so that a crash never breaks resume.

Layout: ``OUT/checkpoints/step<N>/`` (DeepSpeed's files for that step, frozen backbone
excluded) plus ``step<N>/COMPLETE`` once every rank has finished writing, and
``OUT/checkpoints/latest`` naming the newest complete tag. ``latest`` is replaced atomically
(write a temporary file, then rename) only after the ``COMPLETE`` marker exists, so a crash
mid-save leaves the previous checkpoint as "latest".
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from . import distributed as dist_env

COMPLETE = "COMPLETE"
LATEST = "latest"


def rng_state() -> dict:
    from deepspeed.accelerator import get_accelerator

    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    accel = get_accelerator()
    if accel.device_name() != "cpu":
        state["device"] = accel.get_rng_state()
    return state


def restore_rng(state: dict) -> None:
    from deepspeed.accelerator import get_accelerator

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "device" in state and get_accelerator().device_name() != "cpu":
        get_accelerator().set_rng_state(state["device"])


def save(engine, directory: Path, train_state: dict, keep: int) -> Path:
    """Collective: every rank calls it. Returns the tag directory."""
    import deepspeed.comm as dist

    tag = f"step{train_state['step']}"
    client = {"state": train_state, "rng": rng_state()}
    # DeepSpeed's own `latest` is not written atomically; we write ours after the marker
    engine.save_checkpoint(str(directory), tag=tag, client_state=client, save_latest=False,
                           exclude_frozen_parameters=True)
    dist.barrier()
    if dist_env.is_main():
        (directory / tag / COMPLETE).write_text(f"{train_state['step']}\n")
        tmp = directory / (LATEST + ".tmp")
        tmp.write_text(tag)
        os.replace(tmp, directory / LATEST)
        if keep > 0:
            for old in complete_tags(directory)[:-keep]:
                shutil.rmtree(directory / old, ignore_errors=True)
    dist.barrier()
    return directory / tag


def complete_tags(directory: Path) -> list[str]:
    """Tags with a COMPLETE marker, oldest first."""
    tags = [p.name for p in directory.glob("step*") if (p / COMPLETE).is_file()]
    return sorted(tags, key=lambda t: int(t[4:]) if t[4:].isdigit() else -1)


def find_resume_tag(directory: Path) -> str | None:
    """The tag ``latest`` names if it is complete, else the newest complete tag, else None."""
    if not directory.is_dir():
        return None
    latest = directory / LATEST
    if latest.is_file():
        tag = latest.read_text().strip()
        if (directory / tag / COMPLETE).is_file():
            return tag
    tags = complete_tags(directory)
    return tags[-1] if tags else None


def resume(engine, directory: Path, resume_arg: str, train_state: dict) -> str | None:
    """Load the checkpoint chosen by ``--resume`` (auto | none | a tag directory) into
    ``engine`` and ``train_state``; returns its path, or None when starting fresh."""
    if resume_arg == "none":
        return None
    if resume_arg == "auto":
        tag = find_resume_tag(directory)
        if tag is None:
            return None
        load_dir = directory
    else:
        path = Path(resume_arg)
        if not (path / COMPLETE).is_file():
            raise SystemExit(f"error: --resume {resume_arg}: not a complete checkpoint "
                             f"directory (no {COMPLETE} marker)")
        load_dir, tag = path.parent, path.name
    path, client = engine.load_checkpoint(str(load_dir), tag=tag, load_module_strict=False)
    if path is None or client is None:
        raise SystemExit(f"error: could not load checkpoint {load_dir / tag}")
    train_state.update(client["state"])
    restore_rng(client["rng"])
    return str(load_dir / tag)
