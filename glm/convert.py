"""Convert a GLM checkpoint (THUDM release directory or hub layout) to a safetensors directory.

    python -m glm.convert SRC DST [--preset glm-10b | --config config.json]
                                  [--dtype fp16|bf16|fp32] [--force] [--allow-unsafe-pickle]
    glm convert SRC DST ...            (the `glm` console script; "convert" is optional)

DST receives `model.safetensors` (THUDM key names, model-parallel shards merged) and
`config.json` (the GLMConfig fields), i.e. the hub layout that `glm.checkpoint.from_pretrained`
loads memory-mapped and without unpickling anything.

The output is written tensor by tensor (the safetensors header is computed from the shapes
first), so converting GLM-10B needs about one tensor of memory, not the whole model. Each
file goes to a temporary name in DST first and is renamed into place when complete, so an
interrupted run never leaves a truncated model.safetensors.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile

import torch

from glm.checkpoint import (
    CheckpointError,
    _cast,
    _expected_shapes,
    _meta_model,
    _resolve_config,
    _validate,
    open_checkpoint,
    parse_dtype,
)
from glm.config import PRESETS, GLMConfig

_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def _write_atomic(final_path: str, write) -> None:
    """Call `write(fileobj)` on a temporary file next to `final_path`, then rename it there."""
    directory = os.path.dirname(final_path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(final_path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_safetensors_streaming(path: str, keys: list[str], shape_of, dtype_of, tensor_of,
                                metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file one tensor at a time.

    The header (names, dtypes, shapes, byte offsets) is computed from `shape_of(key)` and
    `dtype_of(key)` alone; then `tensor_of(key)` is called per key and its bytes appended, so
    at most one tensor is in memory. Written atomically (temporary file + rename).
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for k in keys:
        dt = dtype_of(k)
        if dt not in _ST_DTYPES:
            raise CheckpointError(f"{k!r}: dtype {dt} cannot be stored in safetensors")
        shape = [int(s) for s in shape_of(k)]
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dt).element_size()
        header[k] = {"dtype": _ST_DTYPES[dt], "shape": shape,
                     "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # pad the header to 8-byte alignment, as safetensors does

    def write(f) -> None:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for k in keys:
            t = tensor_of(k)
            want = header[k]
            if list(t.shape) != want["shape"] or _ST_DTYPES[t.dtype] != want["dtype"]:
                raise RuntimeError(f"{k!r}: got {t.dtype} {tuple(t.shape)}, header says "
                                   f"{want['dtype']} {tuple(want['shape'])}")
            data = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8)
            f.write(memoryview(data.numpy()))

    _write_atomic(path, write)


def convert(src: str, dst: str, preset: str | GLMConfig | None = None,
            dtype: str | torch.dtype | None = None, force: bool = False,
            allow_unsafe_pickle: bool = False) -> tuple[str, str]:
    """Convert checkpoint `src` (either layout) to `dst/model.safetensors` + `dst/config.json`.

    `preset` (a preset name or a GLMConfig) gives the shape for release directories (no
    config.json there) and overrides a hub config.json. `dtype` casts floating tensors (None keeps the stored dtype). Keys and
    shapes are checked against GLMModel(config) first. Refuses to overwrite existing output
    files unless `force`. `allow_unsafe_pickle` reads `.pt` files that the weights-only
    unpickler refuses with the full one (it executes code stored in the file: only for files
    you trust; the safetensors output is then safe to share). Returns the two written paths.
    """
    dtype = parse_dtype(dtype)
    weights_path = os.path.join(dst, "model.safetensors")
    config_path = os.path.join(dst, "config.json")
    existing = [p for p in (weights_path, config_path) if os.path.exists(p)]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise CheckpointError("SRC and DST are the same directory")

    with open_checkpoint(src, allow_unsafe_pickle) as reader:
        cfg = _resolve_config(reader, preset)
        expected = _expected_shapes(_meta_model(cfg))
        _validate(reader, expected, cfg)
        keys = list(expected)  # model order: embeddings, layers 0..L-1, final LayerNorm

        def dtype_of(k: str) -> torch.dtype:  # from metadata only, no tensor data read
            stored = reader.dtype(k)
            return dtype if dtype is not None and stored.is_floating_point else stored

        os.makedirs(dst, exist_ok=True)
        write_safetensors_streaming(
            weights_path, keys, shape_of=reader.shape, dtype_of=dtype_of,
            tensor_of=lambda k: _cast(reader.get(k), dtype),
            metadata={"format": "pt", "source": os.path.abspath(src)})
    _write_atomic(config_path,
                  lambda f: f.write((json.dumps(cfg.to_dict(), indent=2) + "\n").encode()))
    return weights_path, config_path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="glm convert",
        description=(
            "Convert a GLM checkpoint to the hub layout: DST/model.safetensors (THUDM key "
            "names, model-parallel shards merged) + DST/config.json. SRC is either a THUDM "
            "release directory (latest_checkpointed_iteration.txt or latest -> "
            "<tag>/mp_rank_XX_model_states.pt; give --preset or --config, since it has no "
            "config.json) or "
            "a hub directory (config.json + pytorch_model.bin / *.safetensors, optionally "
            "sharded, keys with or without 'glm.'). Written tensor by tensor through a "
            "temporary file, so memory stays at about one tensor and an interrupted run "
            "leaves no partial output."),
        epilog="example: glm convert ~/glm-10b-1024 ~/glm-10b-st --preset glm-10b --dtype fp16",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint directory to read")
    p.add_argument("dst", metavar="DST", help="output directory (created if missing)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--preset", choices=sorted(PRESETS),
                       help="model shape; a release directory (no config.json) needs this or "
                            "--config; overrides SRC/config.json otherwise")
    shape.add_argument("--config", metavar="JSON",
                       help="model shape from a config.json (GLMConfig fields or the hub's "
                            "key names), for shapes that are not presets")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"],
                   help="cast floating-point weights (default: keep the stored dtype)")
    p.add_argument("--force", action="store_true",
                   help="overwrite DST/model.safetensors and DST/config.json if they exist")
    p.add_argument("--allow-unsafe-pickle", action="store_true",
                   help="read SRC .pt files that the weights-only unpickler refuses (e.g. "
                        "training files pickling optimizer objects) with the full unpickler, "
                        "which executes code stored in the file: only for checkpoints you "
                        "trust")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m glm.convert` and of the `glm` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":
        argv = argv[1:]
    args = _parser().parse_args(argv)
    try:
        shape = args.preset
        if args.config:
            with open(args.config) as f:
                shape = GLMConfig.from_dict(json.load(f))
        weights, config = convert(args.src, args.dst, preset=shape, dtype=args.dtype,
                                  force=args.force, allow_unsafe_pickle=args.allow_unsafe_pickle)
    except (CheckpointError, FileExistsError, OSError, ValueError) as exc:
        print(f"glm convert: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {weights} ({os.path.getsize(weights) / 2**20:.1f} MiB) and {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
