"""Reading GLM checkpoints: THUDM's release directories and the Hugging Face hub layout.

Two layouts are accepted (see glm/README.md):

(a) THUDM release directory (what `lfs.aminer.cn/.../glm-10b-1024.zip` unpacks to, and what
    THUDM/GLM's Megatron/DeepSpeed training writes)::

        DIR/latest_checkpointed_iteration.txt    (or DIR/latest) naming a tag, e.g. "release"
        DIR/<tag>/mp_rank_00_model_states.pt     a dict whose "module" entry is the state dict
        DIR/<tag>/mp_rank_01_model_states.pt     ... one file per model-parallel rank

    A numeric tag names the directory `<n>` (THUDM/GLM), `iter_<n:07d>` (Megatron-LM) or
    `global_step<n>` (DeepSpeed); any other text names the directory verbatim. Without a
    tracker file, DIR itself may hold the `mp_rank_XX_model_states.pt` files. There is no
    config.json (one added to DIR is used): the shape comes from the caller (`config=` or a
    preset) and is checked.

(b) Hub layout: `config.json` next to `model.safetensors`, `pytorch_model.bin`, any
    `*.safetensors`, or a sharded set named by `model.safetensors.index.json` /
    `pytorch_model.bin.index.json`. Keys may carry a leading `glm.` (the hub classes' prefix).

Model-parallel shards are merged with THUDM's split rules (as in THUDM/GLM `change_mp.py`):

    attention.query_key_value.{weight,bias}  dim 0, per q/k/v third: rank r holds
                                             [q_r; k_r; v_r]; merged = [q_0..q_n; k_0..; v_0..]
    word_embeddings.weight                   dim 0 (vocabulary)
    mlp.dense_h_to_4h.{weight,bias}          dim 0
    attention.dense.weight                   dim 1 (bias whole, identical on every rank)
    mlp.dense_4h_to_h.weight                 dim 1 (bias whole)
    position tables, LayerNorms              whole

Safety. Pickled `.pt` files are read with torch's weights-only unpickler, plus an allowlist of
the harmless non-tensor state THUDM/DeepSpeed training files carry next to "module" (numpy
arrays/dtypes/scalars of RNG states, `argparse.Namespace`). A file needing anything else is
refused (`CheckpointError`): the full unpickler runs whatever code the file pickles, so it is
only used with `allow_unsafe_pickle=True` (`--allow-unsafe-pickle`), for files you trust.

Memory. Every reader is lazy: pickles are opened with `torch.load(mmap=True)` and safetensors
with `safe_open`, so opening a checkpoint reads only its metadata, and `get(key)` touches the
bytes of that one tensor (merging its model-parallel pieces when there are several). The
loaders below build on that:

* `from_pretrained(..., zero_init=False)` builds the model on the `meta` device (no memory,
  no random init) and assigns the checkpoint tensors into it (`load_state_dict(assign=True)`),
  so the process holds one copy of the weights, not two.
* `from_pretrained(..., zero_init=True)` builds the model inside `deepspeed.zero.Init`, so each
  rank only ever holds its 1/world_size partition, then every rank copies its own slice of each
  parameter from the memory-mapped files into its partition (safetensors: reading only the
  rows that cover the slice). No parameter is gathered and nothing is broadcast, so loading
  adds at most one parameter's partition-sized read to any rank. Partition layouts other than
  DeepSpeed's default (hpZ, NVMe offload) fall back to gathering each submodule, rank 0
  copying and the context's exit re-partitioning.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from glm.config import PRESETS, GLMConfig
from glm.errors import GLMUserError

__all__ = [
    "CheckpointError",
    "CheckpointReader",
    "ReleaseCheckpointReader",
    "HubCheckpointReader",
    "open_checkpoint",
    "load_state_dict_from_path",
    "from_pretrained",
    "resolve_release_dir",
    "merge_model_parallel",
    "split_model_parallel",
    "parse_dtype",
    "TRACKER_FILES",
    "KEY_PREFIXES",
]

#: Files naming the checkpoint tag inside a release directory, in the order they are tried.
TRACKER_FILES = ("latest_checkpointed_iteration.txt", "latest")
#: Leading key prefixes stripped on load (the hub's GLM* classes keep the backbone in `.glm`).
KEY_PREFIXES = ("glm.",)

_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_TOKENIZER_BY_VOCAB = {50048: "chinese-sp", 30592: "bert-uncased"}
_MP_FILE = re.compile(r"^mp_rank_(\d+)_model_states\.pt$")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class CheckpointError(GLMUserError):
    """A checkpoint that cannot be read or does not fit the model; the message names the
    offending key(s) and file(s)."""


# -- dtypes -------------------------------------------------------------------------------

_DTYPE_NAMES = {
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """`None`, a `torch.dtype`, or one of fp16/bf16/fp32 (and their long names)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPE_NAMES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise GLMUserError(f"unknown dtype {dtype!r}; use fp16, bf16 or fp32") from None


def _cast(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is not None and t.is_floating_point() and t.dtype != dtype:
        return t.to(dtype)
    return t


# -- model-parallel split rules -------------------------------------------------------------

def _split_rule(key: str) -> str:
    """How THUDM's model-parallel training splits `key`: "qkv", "dim0", "dim1" or "whole"."""
    if ".attention.query_key_value." in key:
        return "qkv"
    if key == "word_embeddings.weight" or ".mlp.dense_h_to_4h." in key:
        return "dim0"
    if key.endswith(".attention.dense.weight") or key.endswith(".mlp.dense_4h_to_h.weight"):
        return "dim1"
    return "whole"


def merge_model_parallel(key: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """Merge one tensor's model-parallel pieces (`parts[r]` from rank r) into the full tensor."""
    if len(parts) == 1:
        return parts[0]
    rule = _split_rule(key)
    if rule == "qkv":
        thirds = [p.chunk(3, dim=0) for p in parts]          # rank r -> (q_r, k_r, v_r)
        return torch.cat([t[i] for i in range(3) for t in thirds], dim=0)
    if rule == "dim0":
        return torch.cat(parts, dim=0)
    if rule == "dim1":
        return torch.cat(parts, dim=1)
    return parts[0]


def split_model_parallel(key: str, tensor: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Inverse of `merge_model_parallel`: rank r's piece of `tensor` for `n`-way model
    parallelism (used by the tests to write release directories; also handy for exporting)."""
    rule = _split_rule(key)
    if n == 1 or rule == "whole":
        return [tensor.clone() for _ in range(n)]
    if rule == "qkv":
        q, k, v = (t.chunk(n, dim=0) for t in tensor.chunk(3, dim=0))
        return [torch.cat([q[r], k[r], v[r]], dim=0).clone() for r in range(n)]
    dim = 0 if rule == "dim0" else 1
    return [t.clone() for t in tensor.chunk(n, dim=dim)]


def _merged_shape(key: str, shapes: list[torch.Size], files: list[str]) -> torch.Size:
    """The merged shape of `key` from its per-rank shapes, checking they are consistent."""
    first = shapes[0]
    if len(shapes) == 1:
        return first
    rule = _split_rule(key)
    dim = {"qkv": 0, "dim0": 0, "dim1": 1}.get(rule)
    for s, f in zip(shapes[1:], files[1:]):
        same = (len(s) == len(first)
                and all(a == b for i, (a, b) in enumerate(zip(s, first)) if i != dim))
        if not same:
            raise CheckpointError(
                f"{key!r}: model-parallel pieces disagree in shape: {tuple(first)} in "
                f"{files[0]} vs {tuple(s)} in {f}")
    if dim is None:
        return first
    if dim >= len(first):
        raise CheckpointError(f"{key!r} in {files[0]} has shape {tuple(first)}; cannot merge it "
                              f"along dim {dim}")
    if rule == "qkv" and any(s[0] % 3 for s in shapes):
        raise CheckpointError(f"{key!r}: a model-parallel piece has {shapes[0][0]} rows, "
                              f"not a multiple of 3 (q/k/v) ({files[0]})")
    out = list(first)
    out[dim] = sum(s[dim] for s in shapes)
    return torch.Size(out)


# -- low-level file readers -----------------------------------------------------------------

def _training_state_globals() -> list:
    """Globals the weights-only unpickler may build besides tensors: what THUDM/Megatron/
    DeepSpeed training files pickle next to "module" and that runs no code of the file's
    choosing - numpy RNG states (arrays, numeric dtypes, scalars) and `argparse.Namespace`.
    numpy's reconstruct functions are listed under both module names (`numpy.core` in files
    written by numpy 1, `numpy._core` by numpy 2)."""
    import argparse

    allowed: list = [argparse.Namespace]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return allowed
    try:
        from numpy._core import multiarray  # numpy >= 2 (numpy.core warns there)
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    for name in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, name)
        allowed += [(fn, f"{module}.{name}")
                    for module in ("numpy.core.multiarray", "numpy._core.multiarray")]
    allowed += [np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)  # the per-dtype classes, numpy >= 1.25
    if dtypes is not None:
        allowed += [cls for name in sorted(dir(dtypes))
                    if isinstance(cls := getattr(dtypes, name), type)
                    and issubclass(cls, np.dtype) and name != "ObjectDType"]
    return allowed


def _weights_only_load(path: str) -> Any:
    """`torch.load` with the weights-only unpickler (+ `_training_state_globals`),
    memory-mapped when the file format allows it."""
    with torch.serialization.safe_globals(_training_state_globals()):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            # mmap needs the zip format torch.save has written since torch 1.6; older
            # (legacy-format) files are read into memory instead.
            if "mmap" not in str(exc):
                raise
            warnings.warn(f"{path}: legacy (pre-zip) torch.save format, cannot memory-map it; "
                          "reading it into memory", stacklevel=4)
            return torch.load(path, map_location="cpu", weights_only=True)


def _refusal_reason(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "WeightsUnpickler error:" in ln:
            return ln.split("WeightsUnpickler error:", 1)[1].strip()
    return lines[0] if lines else type(exc).__name__


def _torch_load(path: str, allow_unsafe_pickle: bool = False) -> Any:
    """Read a `.pt` file safely: weights-only unpickler plus the training-state allowlist.

    A file that needs more is refused unless `allow_unsafe_pickle`, which reads it with the
    full unpickler (it executes whatever the file pickles: only for files you trust)."""
    try:
        return _weights_only_load(path)
    except pickle.UnpicklingError as exc:
        reason = _refusal_reason(exc)
        if not allow_unsafe_pickle:
            raise CheckpointError(
                f"{path}: refusing to load it: the weights-only unpickler rejects it ({reason}), "
                "and the full unpickler would execute code stored in the file. If you trust "
                "this checkpoint, pass --allow-unsafe-pickle (training; allow_unsafe_pickle="
                "True in Python), or convert it once with `glm convert --allow-unsafe-pickle "
                "SRC DST` and load the safetensors copy") from None
        warnings.warn(
            f"{path}: the weights-only unpickler rejects it ({reason}); loading it with the "
            "full unpickler (weights_only=False) as --allow-unsafe-pickle asks, which executes "
            "code stored in the file - only for checkpoints you trust", stacklevel=3)
        try:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError:
            return torch.load(path, map_location="cpu", weights_only=False)


def _state_dict_of(obj: Any, path: str) -> Mapping[str, torch.Tensor]:
    """The state dict inside a loaded pickle: `obj["module"]` (THUDM/DeepSpeed),
    `obj["state_dict"]`, or `obj` itself when it maps names to tensors."""
    if isinstance(obj, Mapping):
        for name in ("module", "state_dict", "model"):
            inner = obj.get(name)
            if isinstance(inner, Mapping) and inner and all(
                    isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise CheckpointError(f"{path}: no state dict found (expected a dict of tensors, or one "
                          f"under 'module'); top-level entries: "
                          f"{sorted(obj)[:20] if isinstance(obj, Mapping) else type(obj).__name__}")


def _strip_prefixes(keys: Iterable[str], source: str) -> dict[str, str]:
    """Map canonical key -> stored key, dropping a leading `glm.`; duplicates are an error."""
    out: dict[str, str] = {}
    for stored in keys:
        key = stored
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key in out:
            raise CheckpointError(f"{source}: key {key!r} appears twice (as {out[key]!r} and "
                                  f"{stored!r})")
        out[key] = stored
    return out


# -- readers ------------------------------------------------------------------------------

class CheckpointReader:
    """Lazy, per-tensor access to a checkpoint under THUDM's key names.

    `keys()` lists the (prefix-stripped, merged) keys, `shape(key)` their full shape without
    reading data, `get(key)` reads (and merges) one tensor, `file_of(key)` says where it lives.
    `config` is the GLMConfig found next to the weights (hub layout) or None.
    """

    source: str
    config: GLMConfig | None = None

    def keys(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> torch.Size:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def get_flat(self, key: str, start: int, length: int) -> torch.Tensor:
        """Elements ``[start, start + length)`` of the flattened tensor ``key`` (row-major):
        what one ZeRO-3 rank holds of it. Readers that can read part of a tensor read only
        the rows that cover the range; this default reads the whole tensor."""
        return self.get(key).reshape(-1)[start:start + length]

    def file_of(self, key: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in set(self.keys())

    def state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Every tensor (merged), optionally cast; reads the whole checkpoint."""
        return {k: _cast(self.get(k), dtype) for k in self.keys()}


def resolve_release_dir(path: str) -> str:
    """The directory holding `mp_rank_XX_model_states.pt` for a release checkpoint at `path`.

    Reads `latest_checkpointed_iteration.txt` (else `latest`); "release" or any non-numeric
    text names a sub-directory verbatim; a number n names `n` (THUDM/GLM), `iter_{n:07d}`
    (Megatron-LM) or `global_step{n}` (DeepSpeed), whichever exists. Without a tracker file,
    `path` itself (or `path/release`) must hold the shards.
    """
    for name in TRACKER_FILES:
        tracker = os.path.join(path, name)
        if not os.path.isfile(tracker):
            continue
        with open(tracker) as f:
            tag = f.read().strip()
        candidates = [tag]
        if tag.isdigit():
            n = int(tag)
            candidates = [str(n), tag, f"iter_{n:07d}", f"global_step{n}"]
        for cand in candidates:
            d = os.path.join(path, cand)
            if os.path.isdir(d):
                return d
        raise CheckpointError(f"{tracker} names tag {tag!r}, but none of "
                              f"{[os.path.join(path, c) for c in dict.fromkeys(candidates)]} "
                              "is a directory")
    if _mp_files(path):
        return path
    if _mp_files(os.path.join(path, "release")):
        return os.path.join(path, "release")
    raise CheckpointError(f"{path}: not a GLM release checkpoint (no {' / '.join(TRACKER_FILES)}"
                          " and no mp_rank_XX_model_states.pt)")


def _mp_files(d: str) -> list[str]:
    if not os.path.isdir(d):
        return []
    found = sorted((int(m.group(1)), name) for name in os.listdir(d)
                   if (m := _MP_FILE.match(name)))
    return [os.path.join(d, name) for _, name in found]


class ReleaseCheckpointReader(CheckpointReader):
    """THUDM's release layout (`<tag>/mp_rank_XX_model_states.pt`), model-parallel shards
    merged per key on demand. Each shard is opened once with `torch.load(mmap=True)`, so only
    the tensors asked for are read."""

    def __init__(self, path: str, allow_unsafe_pickle: bool = False):
        self.directory = resolve_release_dir(path)
        self.files = _mp_files(self.directory)
        if not self.files:
            raise CheckpointError(f"{self.directory}: no mp_rank_XX_model_states.pt files")
        ranks = [int(_MP_FILE.match(os.path.basename(f)).group(1)) for f in self.files]
        if ranks != list(range(len(ranks))):
            raise CheckpointError(f"{self.directory}: model-parallel ranks {ranks} are not "
                                  f"0..{len(ranks) - 1}; a shard is missing")
        self.source = self.directory
        self.config = None
        self._shards = []       # per rank: canonical key -> tensor (memory-mapped)
        for f in self.files:
            sd = _state_dict_of(_torch_load(f, allow_unsafe_pickle), f)
            names = _strip_prefixes(sd.keys(), f)
            self._shards.append({k: sd[stored] for k, stored in names.items()})
        first = set(self._shards[0])
        for f, shard in zip(self.files[1:], self._shards[1:]):
            if set(shard) != first:
                only_0 = sorted(first - set(shard))
                only_r = sorted(set(shard) - first)
                raise CheckpointError(
                    f"model-parallel shards hold different keys: {self.files[0]} vs {f}: "
                    f"only in the first {only_0[:10]}, only in the other {only_r[:10]}")
        self._keys = list(self._shards[0])

    @property
    def mp_size(self) -> int:
        return len(self.files)

    def keys(self) -> list[str]:
        return list(self._keys)

    def _check(self, key: str) -> None:
        if key not in self._shards[0]:
            raise CheckpointError(f"key {key!r} is not in {self.directory}")

    def shape(self, key: str) -> torch.Size:
        self._check(key)
        return _merged_shape(key, [s[key].shape for s in self._shards], self.files)

    def dtype(self, key: str) -> torch.dtype:
        self._check(key)
        return self._shards[0][key].dtype

    def get(self, key: str) -> torch.Tensor:
        self.shape(key)  # consistency check
        return merge_model_parallel(key, [s[key] for s in self._shards])

    def file_of(self, key: str) -> str:
        self._check(key)
        return self.files[0] if self.mp_size == 1 else f"{self.directory}/mp_rank_*"

    def close(self) -> None:
        self._shards = []


class HubCheckpointReader(CheckpointReader):
    """Hub layout: config.json + safetensors / pytorch_model.bin, possibly sharded with an
    index json; keys with or without a leading `glm.`. Safetensors files are read through
    `safe_open` (memory-mapped, one tensor per `get`), pickles with `torch.load(mmap=True)`."""

    def __init__(self, path: str, allow_unsafe_pickle: bool = False):
        self.directory = path
        self.source = path
        cfg_path = os.path.join(path, "config.json")
        self.config = None
        if os.path.isfile(cfg_path):
            with open(cfg_path) as f:
                raw = json.load(f)
            self.config = GLMConfig.from_dict(raw)
            if "tokenizer" not in raw:
                # THUDM's hub config.json names no tokenizer; the padded vocabulary tells the
                # Chinese SentencePiece (50048) and BERT-WordPiece (30592) models apart.
                guess = _TOKENIZER_BY_VOCAB.get(self.config.vocab_size)
                if guess:
                    self.config.tokenizer = guess
        self.files = self._weight_files(path)
        self._handles: dict[str, Any] = {}
        self._where: dict[str, tuple[str, str]] = {}   # canonical key -> (file, stored key)
        for f in self.files:
            if f.endswith(".safetensors"):
                from safetensors import safe_open
                handle = safe_open(f, framework="pt", device="cpu")
                stored_keys = list(handle.keys())
            else:
                handle = _state_dict_of(_torch_load(f, allow_unsafe_pickle), f)
                stored_keys = list(handle.keys())
            self._handles[f] = handle
            for key, stored in _strip_prefixes(stored_keys, f).items():
                if key in self._where:
                    raise CheckpointError(f"key {key!r} is stored twice: in "
                                          f"{self._where[key][0]} and {f}")
                self._where[key] = (f, stored)

    @staticmethod
    def _weight_files(path: str) -> list[str]:
        for index in _INDEX_FILES:
            ipath = os.path.join(path, index)
            if os.path.isfile(ipath):
                with open(ipath) as f:
                    weight_map = json.load(f).get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise CheckpointError(f"{ipath}: no 'weight_map'")
                files = [os.path.join(path, n) for n in dict.fromkeys(weight_map.values())]
                missing = [f for f in files if not os.path.isfile(f)]
                if missing:
                    raise CheckpointError(f"{ipath} names shard files that do not exist: "
                                          f"{missing}")
                return files
        for name in _WEIGHT_FILES:
            f = os.path.join(path, name)
            if os.path.isfile(f):
                return [f]
        found = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
        if found:
            return [os.path.join(path, n) for n in found]
        raise CheckpointError(f"{path}: no weights found (looked for {', '.join(_INDEX_FILES)}, "
                              f"{', '.join(_WEIGHT_FILES)}, *.safetensors)")

    def keys(self) -> list[str]:
        return list(self._where)

    def _locate(self, key: str) -> tuple[str, str]:
        try:
            return self._where[key]
        except KeyError:
            raise CheckpointError(f"key {key!r} is not in {self.source}") from None

    def shape(self, key: str) -> torch.Size:
        f, stored = self._locate(key)
        handle = self._handles[f]
        if f.endswith(".safetensors"):
            return torch.Size(handle.get_slice(stored).get_shape())
        return handle[stored].shape

    def dtype(self, key: str) -> torch.dtype:
        f, stored = self._locate(key)
        handle = self._handles[f]
        if f.endswith(".safetensors"):
            return _SAFETENSORS_DTYPES[handle.get_slice(stored).get_dtype()]
        return handle[stored].dtype

    def get(self, key: str) -> torch.Tensor:
        f, stored = self._locate(key)
        handle = self._handles[f]
        if f.endswith(".safetensors"):
            return handle.get_tensor(stored)
        return handle[stored]

    def get_flat(self, key: str, start: int, length: int) -> torch.Tensor:
        f, stored = self._locate(key)
        if not f.endswith(".safetensors"):  # a memory-mapped pickle: slicing reads no more
            return super().get_flat(key, start, length)
        part = self._handles[f].get_slice(stored)
        shape = part.get_shape()
        if not shape:  # a scalar: nothing to save
            return super().get_flat(key, start, length)
        row = math.prod(shape[1:])  # elements per index of the first dimension
        first, last = start // row, -(-(start + length) // row)
        rows = part[first:last].reshape(-1)  # reads only these rows from the file
        offset = start - first * row
        return rows[offset:offset + length]

    def file_of(self, key: str) -> str:
        return self._locate(key)[0]

    def close(self) -> None:
        self._handles = {}


def open_checkpoint(path: str | os.PathLike, allow_unsafe_pickle: bool = False
                    ) -> CheckpointReader:
    """Open a GLM checkpoint directory of either layout (see the module docstring) lazily.

    `allow_unsafe_pickle`: read `.pt` files the weights-only unpickler refuses with the full
    unpickler, which executes code stored in the file (only for files you trust)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a directory (expected a GLM release directory or a "
                              "hub-layout directory with config.json)")
    names = set(os.listdir(path))
    hub_weights = (any(n in names for n in _WEIGHT_FILES + _INDEX_FILES)
                   or any(n.endswith(".safetensors") for n in names))
    release = any(n in names for n in TRACKER_FILES) or any(_MP_FILE.match(n) for n in names)
    if hub_weights and not release:
        return HubCheckpointReader(path, allow_unsafe_pickle)
    if "config.json" in names and not release:
        return HubCheckpointReader(path, allow_unsafe_pickle)   # raises "no weights found"
    reader = ReleaseCheckpointReader(path, allow_unsafe_pickle)
    if "config.json" in names:  # a release directory someone added a config.json to
        with open(os.path.join(path, "config.json")) as f:
            reader.config = GLMConfig.from_dict(json.load(f))
    return reader


def load_state_dict_from_path(
    path: str | os.PathLike, dtype: str | torch.dtype | None = None,
    allow_unsafe_pickle: bool = False,
) -> tuple[dict[str, torch.Tensor], GLMConfig | None]:
    """Read a whole checkpoint (either layout) into one merged state dict with THUDM's key
    names (no `glm.` prefix). Returns `(state_dict, config)`; config is None for release
    directories (they carry none). Holds the whole model in memory; prefer `from_pretrained`
    or `open_checkpoint` for large models. `allow_unsafe_pickle`: see `open_checkpoint`."""
    with open_checkpoint(path, allow_unsafe_pickle) as reader:
        return reader.state_dict(parse_dtype(dtype)), reader.config


# -- building models ------------------------------------------------------------------------

def _resolve_config(reader: CheckpointReader, config: GLMConfig | str | None) -> GLMConfig:
    if isinstance(config, str):
        return GLMConfig.from_preset(config)
    if config is not None:
        return config
    if reader.config is not None:
        return reader.config
    raise CheckpointError(
        f"{reader.source} has no config.json (THUDM release layout), so the model shape must "
        f"be given: pass config=GLMConfig.from_preset(NAME) (or config=NAME) with NAME one of "
        f"{sorted(PRESETS)}, or a GLMConfig; on the command line, --preset NAME")


def _expected_shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    """Every state-dict entry of `model` with its full shape (`ds_shape` under ZeRO-3)."""
    return {k: torch.Size(getattr(v, "ds_shape", v.shape))
            for k, v in model.state_dict(keep_vars=True).items()}


_MAX_LISTED = 10


def _listing(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f"{sep}... ({more} more)" if more > 0 else "")


def _describe_checkpoint(reader: CheckpointReader) -> str:
    """What shape the checkpoint itself suggests (for error messages)."""
    keys = reader.keys()
    layers = {int(m.group(1)) for k in keys if (m := re.match(r"transformer\.layers\.(\d+)\.", k))}
    parts = [f"{len(layers)} layers"]
    if "word_embeddings.weight" in keys:
        v, h = reader.shape("word_embeddings.weight")
        parts[:0] = [f"vocab_size={v}", f"hidden_size={h}"]
    if "transformer.position_embeddings.weight" in keys:
        parts.append(f"max_position_embeddings="
                     f"{reader.shape('transformer.position_embeddings.weight')[0] - 1}")
    return ", ".join(parts)


def _validate(reader: CheckpointReader, expected: Mapping[str, torch.Size],
              config: GLMConfig) -> None:
    """Raise one CheckpointError listing unknown keys, missing keys and shape mismatches
    (each with its file)."""
    have = reader.keys()
    have_set = set(have)
    unknown = [k for k in have if k not in expected]
    missing = [k for k in expected if k not in have_set]
    mismatched = []
    for k in have:
        if k in expected:
            got = reader.shape(k)
            if tuple(got) != tuple(expected[k]):
                mismatched.append(f"{k!r}: checkpoint {tuple(got)} ({reader.file_of(k)}) vs "
                                  f"model {tuple(expected[k])}")
    if not (unknown or missing or mismatched):
        return
    problems = []
    if unknown:
        problems.append("unexpected keys (not in GLMModel): "
                        + _listing([f"{k!r} ({reader.file_of(k)})" for k in unknown]))
    if missing:
        problems.append(f"missing keys (not in {reader.source}): "
                        + _listing([repr(k) for k in missing]))
    if mismatched:
        problems.append("shape mismatch:\n    " + _listing(mismatched, sep="\n    "))
    model = (f"vocab_size={config.vocab_size}, hidden_size={config.hidden_size}, "
             f"{config.num_layers} layers, "
             f"max_position_embeddings={config.max_position_embeddings}")
    raise CheckpointError(
        f"GLM checkpoint {reader.source} does not fit GLMModel({model}); the checkpoint has "
        f"{_describe_checkpoint(reader)}:\n  " + "\n  ".join(problems))


def _meta_model(config: GLMConfig, **model_kwargs):
    from glm.model import GLMModel

    with torch.device("meta"):
        return GLMModel(config, **model_kwargs)


def from_pretrained(
    path: str | os.PathLike,
    config: GLMConfig | str | None = None,
    *,
    dtype: str | torch.dtype | None = None,
    zero_init: bool = False,
    ds_config: dict | str | None = None,
    allow_unsafe_pickle: bool = False,
    **model_kwargs,
):
    """Build a `glm.model.GLMModel` and load a checkpoint of either layout into it.

    Args:
        path: a THUDM release directory or a hub-layout directory (module docstring).
        config: the model shape: a GLMConfig or a preset name ("glm-10b", ...). Required for
            release directories (they carry no config.json); for hub directories it overrides
            config.json. Either way every tensor's shape is checked against it.
        dtype: fp16/bf16/fp32 (or a torch.dtype) for the weights. None keeps the dtype stored
            in the checkpoint (zero_init=False); with zero_init it lets `ds_config` decide
            (its fp16/bf16 section; fp32 when neither is enabled or there is no ds_config).
        zero_init: build the model inside `deepspeed.zero.Init(config_dict_or_path=ds_config)`
            (ZeRO stage 3: every parameter partitioned over the ranks at creation), then every
            rank copies its own slice of each parameter into its partition, reading only
            that part of the file(s) (model-parallel pieces are merged per tensor); no rank
            ever holds a full parameter (hpZ / NVMe layouts gather one submodule at a time
            instead). Must be called on every rank (it is collective); the checkpoint
            directory must be readable by every rank. torch.distributed is initialised through
            `deepspeed.init_distributed()` if it is not already.
        ds_config: the DeepSpeed config (dict or JSON path) for zero.Init; use the same one
            you pass to `deepspeed.initialize`.
        allow_unsafe_pickle: read `.pt` files that the weights-only unpickler (with the
            allowlist of training-state globals: numpy RNG states, argparse.Namespace) refuses
            with the full unpickler. That executes code stored in the file: only for
            checkpoints you trust. Without it such a file raises CheckpointError.
        **model_kwargs: passed to GLMModel (e.g. attention_impl="explicit").

    Returns:
        The model in eval mode (call .train() to train).

    Raises:
        CheckpointError: no/unknown layout, missing config, or keys/shapes that do not fit
            (the message names every offending key and its file).
    """
    dtype = parse_dtype(dtype)
    if zero_init:
        return _from_pretrained_zero(os.fspath(path), config, dtype, ds_config, model_kwargs,
                                     allow_unsafe_pickle)

    from glm.model import GLMModel

    with open_checkpoint(path, allow_unsafe_pickle) as reader:
        cfg = _resolve_config(reader, config)
        model = _meta_model(cfg, **model_kwargs)
        expected = _expected_shapes(model)
        _validate(reader, expected, cfg)
        sd = {k: _cast(reader.get(k), dtype) for k in expected}
        if any(v.device.type == "meta" for v in sd.values()):  # pragma: no cover - defensive
            raise RuntimeError(f"{reader.source}: a tensor came back on the meta device")
        # assign=True: the model's parameters become these tensors (no second copy). Tensors
        # read from a pickle stay memory-mapped (copy-on-write) until written to.
        model.load_state_dict(sd, strict=True, assign=True)
        del sd
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()]
                if t.device.type == "meta"]
    if leftover:  # pragma: no cover - GLMModel has no non-persistent buffers today
        raise RuntimeError(f"GLMModel tensors not covered by the checkpoint: {leftover}")
    assert isinstance(model, GLMModel)
    return model.eval()


def _holds_plain_partition(p: torch.nn.Parameter) -> bool:
    """True when ``p`` is a ZeRO-3 parameter whose only copy of the weights is this rank's
    contiguous slice of the flattened tensor in ``p.ds_tensor`` (the default layout)."""
    tensor = getattr(p, "ds_tensor", None)
    return (tensor is not None and getattr(p, "ds_secondary_tensor", None) is None
            and hasattr(p, "ds_zero_partition_rank")
            and "nvme" not in str(getattr(tensor, "final_location", "")))


def _copy_partition(reader: CheckpointReader, key: str, p: torch.nn.Parameter) -> None:
    """Fill this rank's ZeRO-3 partition of ``p`` from the checkpoint: DeepSpeed gives rank r
    elements ``[r * n, (r + 1) * n)`` of the flattened parameter (n = ``ds_tensor.ds_numel``;
    the last rank's slice is zero-padded past the end)."""
    size = p.ds_tensor.ds_numel
    start = size * p.ds_zero_partition_rank
    length = max(0, min(size, p.ds_numel - start))
    if length:
        p.ds_tensor.narrow(0, 0, length).copy_(reader.get_flat(key, start, length))


def _from_pretrained_zero(path: str, config, dtype, ds_config, model_kwargs,
                          allow_unsafe_pickle: bool = False):
    import deepspeed
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    from glm.model import GLMModel

    if not dist.is_initialized():
        deepspeed.init_distributed()
    rank = dist.get_rank()

    # Every rank opens the checkpoint lazily (metadata only) and checks keys and shapes against
    # a meta-device model, so a bad checkpoint fails on all ranks alike, before any
    # collective, instead of leaving the others waiting in a gather.
    reader = open_checkpoint(path, allow_unsafe_pickle)
    try:
        cfg = _resolve_config(reader, config)
        _validate(reader, _expected_shapes(_meta_model(cfg, **model_kwargs)), cfg)

        init_kwargs = {"config_dict_or_path": ds_config}
        if dtype is None and ds_config is None:
            # Without a config, zero.Init would pick fp16 on GPUs and bf16 on CPU by itself.
            dtype = torch.get_default_dtype()
        if dtype is not None:
            init_kwargs["dtype"] = dtype
        with deepspeed.zero.Init(**init_kwargs):
            model = GLMModel(cfg, **model_kwargs)

        # Each rank copies its own partition of every parameter straight from the (memory-
        # mapped) files into `ds_tensor`, reading only the rows that cover it: no gather, no
        # broadcast, and no rank ever holds a full parameter. Layouts this does not cover
        # (hpZ secondary partitions, NVMe-offloaded partitions) take the gathered path: all
        # ranks gather the module, rank 0 copies, the context's exit re-partitions.
        # A read error must not leave the other ranks waiting in a collective: a rank that
        # fails records it, keeps going without copying, and every rank raises after one
        # all-reduce at the end.
        error: BaseException | None = None
        with torch.no_grad():
            for mod_name, module in model.named_modules():
                params = list(module.named_parameters(recurse=False))
                buffers = [(n, b) for n, b in module.named_buffers(recurse=False)
                           if n not in module._non_persistent_buffers_set]
                prefix = f"{mod_name}." if mod_name else ""
                if params and all(_holds_plain_partition(p) for _, p in params):
                    for n, p in params:
                        if error is None:
                            try:
                                _copy_partition(reader, prefix + n, p)
                            except Exception as exc:  # noqa: BLE001 - re-raised below
                                error = exc
                elif params:
                    with deepspeed.zero.GatheredParameters([p for _, p in params],
                                                           modifier_rank=0):
                        if rank == 0 and error is None:
                            try:
                                for n, p in params:
                                    p.data.copy_(reader.get(prefix + n))
                            except Exception as exc:  # noqa: BLE001 - re-raised below
                                error = exc
                for n, b in buffers:  # buffers are not partitioned: every rank reads its own
                    b.copy_(reader.get(prefix + n))

        failed = torch.zeros(dist.get_world_size(),
                             device=get_accelerator().current_device_name())
        failed[rank] = float(error is not None)
        dist.all_reduce(failed)
        if failed.any():
            ranks = ", ".join(str(r) for r in failed.nonzero().flatten().tolist())
            if error is not None:
                raise CheckpointError(f"loading {reader.source} failed on rank {ranks}: "
                                      f"{error}") from error
            raise CheckpointError(f"loading {reader.source} failed on rank {ranks} "
                                  "(see its log)")
    finally:
        reader.close()
    return model.eval()
