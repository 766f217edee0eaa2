"""Read a DeepSpeed JSON config and fill its "auto" values from the run's flags.

Like the Hugging Face integration: the file states the strategy (ZeRO stage, offload, loss
scaling), the command line states the run (batch size, learning rate, precision, where logs go).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")


# what ds_configs/cpu.json holds: one process (or plain data parallel), no ZeRO sharding; the
# default when --deepspeed is not given, so `ptv2 train` works from any directory
DEFAULT_CONFIG = {
    "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto", "gradient_clipping": 1.0, "zero_optimization": {"stage": 0},
    "bf16": {"enabled": "auto"}, "fp16": {"enabled": False},
    "tensorboard": {"enabled": True, "output_path": "auto", "job_name": "deepspeed"},
    "steps_per_print": 1000000000, "wall_clock_breakdown": False,
}


def load_ds_config(path: str | None) -> dict:
    if path is None:
        return json.loads(json.dumps(DEFAULT_CONFIG))
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: DeepSpeed config not found: {path} "
                         f"(ds_configs/ holds cpu.json, cpu_zero3.json, zero2_fp16.json, "
                         f"zero3_fp16.json, zero3_offload_fp16.json)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path}:{e.lineno}: not valid JSON ({e.msg})") from None


def resolve_precision(config: dict, requested: str) -> str:
    """The precision of the run: the flag unless 'auto', else what the config enables."""
    if requested != "auto":
        return requested
    for name in ("bf16", "fp16"):
        if config.get(name, {}).get("enabled") is True:
            return name
    return "fp32"


def fill_ds_config(config: dict, *, micro_batch: int, grad_accum: int, world_size: int,
                   lr: float, weight_decay: float, precision: str, tb_dir: str | None,
                   quantize_frozen: bool = False) -> dict:
    """A copy of ``config`` with every "auto" resolved; explicit values are kept, except the
    precision sections, which follow ``precision`` when it is not 'auto'. ``quantize_frozen``
    turns on ZeRO-3's int8 gathers of non-trainable weights."""
    c = json.loads(json.dumps(config))
    precision = resolve_precision(c, precision)
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    auto = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world_size,
        "gradient_clipping": 1.0,
    }
    for key, value in auto.items():
        if c.get(key, "auto") == "auto":
            c[key] = value
    expected = c["train_micro_batch_size_per_gpu"] * c["gradient_accumulation_steps"] * world_size
    if c["train_batch_size"] != expected:
        raise UserError(f"DeepSpeed config: train_batch_size {c['train_batch_size']} != micro "
                         f"batch x accumulation x world size = {expected}")
    for name in ("fp16", "bf16"):
        section = c.setdefault(name, {})
        section["enabled"] = precision == name
    opt = c.get("optimizer")
    if opt is not None:
        params = opt.setdefault("params", {})
        if params.get("lr", "auto") == "auto":
            params["lr"] = lr
        if params.get("weight_decay", "auto") == "auto":
            params["weight_decay"] = weight_decay
    if quantize_frozen:
        if zero_stage(c) != 3:
            raise UserError("--quantize-frozen needs a ZeRO stage 3 DeepSpeed config")
        c["zero_optimization"]["zero_quantized_nontrainable_weights"] = True
    tb = c.get("tensorboard")
    if tb is not None:
        if tb_dir is None:
            tb["enabled"] = False
        if tb.get("output_path", "auto") == "auto":
            tb["output_path"] = tb_dir or ""
    return c


def zero_stage(config: dict) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))
