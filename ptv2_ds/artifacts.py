"""The task artifact: prompt and head tensors plus what is needed to rebuild the model.

OUT/artifact/model.safetensors   prompt table(s) (MLP/LSTM collapsed) and head tensors
OUT/artifact/ptv2_artifact.json  method, prompt settings, task, labels, backbone + fingerprint,
                                 versions

A multi-task artifact (``ptv2 train --tasks a,b``, MPT-2) holds the one shared prompt table and
every task's head: tensors ``deep_prompt.table`` (or ``input_prompt.table``) and
``heads.<task>.<name>``; its metadata has ``"multitask": true``, ``"tasks": [names]`` and
``"task_meta": {task: {task, family, task_options, labels, head, template, max_seq_len}}``
(what a single-task artifact keeps at the top level) next to the shared keys (method, prompt,
backbone, precision, counts). ``task_view`` turns it into the single-task artifact of one of
its tasks (the shared prompt + that head as ``head.*``), which every single-task loader reads.

Artifacts are written into a temporary directory and swapped in, so a crash never leaves a
half-written artifact behind.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import UserError

WEIGHTS = "model.safetensors"
META = "ptv2_artifact.json"
FORMAT_VERSION = 2  # the newest this version reads; 2 = multi-task (single-task ones stay 1)


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
    tmp = _fresh_tmp(directory)
    save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "ptv2_artifact"})
    return _finish(directory, tmp, meta)


class StreamedArtifact:
    """An artifact whose tensors arrive one at a time and go straight to disk, for models
    too large to hold twice (``finetune`` under ZeRO-3 gathers one parameter at a time).

    The safetensors layout is a little-endian u64 header length, a JSON header naming each
    tensor's dtype, shape and byte range, then the raw bytes in that order; knowing every
    name, shape and dtype up front (``specs``) lets us write the header first and stream the
    data after it. ``add`` must be called in ``specs`` order; ``close`` swaps the finished
    directory in atomically."""

    def __init__(self, directory: str | Path, specs: list[tuple[str, tuple[int, ...],
                                                                  torch.dtype]], meta: dict):
        self.directory, self.meta = Path(directory), meta
        self.tmp = _fresh_tmp(directory)
        header: dict = {"__metadata__": {"format": "ptv2_artifact"}}
        offset = 0
        self.pending: list[tuple[str, tuple[int, ...], torch.dtype]] = list(specs)
        for name, shape, dtype in specs:
            size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + size]}
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self.file = (self.tmp / WEIGHTS).open("wb")
        self.file.write(struct.pack("<Q", len(text)) + text)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        expected, shape, dtype = self.pending.pop(0)
        if name != expected or tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
            raise ValueError(f"streamed artifact: got {name} {tuple(tensor.shape)} "
                             f"{tensor.dtype}, expected {expected} {tuple(shape)} {dtype}")
        data = tensor.detach().cpu().contiguous()
        self.file.write(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")

    def close(self) -> Path:
        self.file.close()
        if self.pending:
            raise ValueError(f"streamed artifact: {len(self.pending)} tensors never written "
                             f"(first: {self.pending[0][0]})")
        return _finish(self.directory, self.tmp, self.meta)


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
                       torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                       torch.bool: "BOOL"}


def _fresh_tmp(directory: str | Path) -> Path:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _finish(directory: str | Path, tmp: Path, meta: dict) -> Path:
    """Write the metadata next to the weights and swap ``tmp`` in for ``directory``."""
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    # a multi-task artifact is version 2, so that a ptv2_ds that cannot read it says so
    meta = {"format": "ptv2_artifact", "format_version": 2 if is_multitask(meta) else 1,
            **meta, "versions": versions()}
    (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def load_artifact(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metadata and tensors of an artifact directory, with errors naming what is wrong."""
    meta = read_meta(directory)
    return meta, load_file(str(Path(directory) / WEIGHTS))


def read_meta(directory: str | Path) -> dict:
    """The artifact's metadata alone (checked: present, JSON, a ptv2 artifact, a format this
    version reads), without reading its tensors."""
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
    return meta


# ---- multi-task artifacts ---------------------------------------------------------------------
MULTITASK_KEYS = ("multitask", "tasks", "task_meta")


def is_multitask(meta: dict) -> bool:
    return bool(meta.get("multitask"))


def artifact_tasks(meta: dict) -> list[str]:
    """The tasks an artifact has a head for."""
    return list(meta["tasks"]) if is_multitask(meta) else [meta["task"]]


def task_view(meta: dict, tensors: dict[str, torch.Tensor] | None, task: str | None,
              source: str = "the artifact") -> tuple[dict, dict[str, torch.Tensor] | None]:
    """(metadata, tensors) of the single-task artifact for ``task`` inside a multi-task one:
    the shared keys plus ``task_meta[task]``; the prompt tensors plus ``heads.<task>.*``
    renamed ``head.*``. A single-task artifact comes back unchanged. ``tensors`` may be None
    (metadata only). UserError when ``task`` is None or not one of the artifact's tasks."""
    if not is_multitask(meta):
        return meta, tensors
    names = artifact_tasks(meta)
    if task is None:
        raise UserError(f"{source} is a multi-task artifact (tasks {', '.join(names)}): pass "
                        "--task with the one to use")
    if task not in names:
        raise UserError(f"{source} has no head for task {task!r}; its tasks are "
                        f"{', '.join(names)}")
    view = {k: v for k, v in meta.items() if k not in MULTITASK_KEYS}
    view.update(meta["task_meta"][task])
    if tensors is None:
        return view, None
    prefix = f"heads.{task}."
    out = {k: v for k, v in tensors.items() if not k.startswith("heads.")}
    out.update({"head." + k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return view, out
