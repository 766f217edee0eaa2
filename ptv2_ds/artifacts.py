"""The task artifact: prompt and head tensors plus what is needed to rebuild the model.

OUT/artifact/model.safetensors   prompt table(s) (MLP/LSTM collapsed) and head tensors
OUT/artifact/ptv2_artifact.json  method, prompt settings, task, labels, backbone + fingerprint,
                                 versions

Artifacts are written into a temporary directory and swapped in, so a crash never leaves a
half-written artifact behind.
"""
from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
META = "ptv2_artifact.json"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    out = {}
    for package in ("ptv2_ds", "torch", "transformers", "deepspeed"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def save_artifact(directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write tensors and metadata to ``directory`` atomically (replacing an older artifact)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "ptv2_artifact"})
    meta = {"format": "ptv2_artifact", "format_version": FORMAT_VERSION, **meta,
            "versions": versions()}
    (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def load_artifact(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metadata and tensors of an artifact directory, with errors naming what is wrong."""
    directory = Path(directory)
    meta_path, weights_path = directory / META, directory / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise SystemExit(f"error: {p} not found; --artifact must be the artifact/ "
                             "directory written by `ptv2 train` (OUT/artifact)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {meta_path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if meta.get("format") != "ptv2_artifact":
        raise SystemExit(f"error: {meta_path} is not a ptv2 artifact (format key missing)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise SystemExit(f"error: {meta_path} has format_version {meta['format_version']}; "
                         f"this ptv2_ds reads up to {FORMAT_VERSION}: upgrade ptv2_ds")
    return meta, load_file(str(weights_path))
