"""Which failures are the user's input and which are real faults: the CLI's exit codes.

- ``UserError`` (a ValueError): bad input that the code detects and raises on purpose (bad
  flags, a malformed data file, a missing option). The CLI prints ``error: <message>`` and exits
  2, without a traceback: the message says what to change.
- Out of memory (``is_out_of_memory``): not a bug in the input and not a crash of the code; the
  CLI prints ``out_of_memory_message`` (what to lower, what to turn on) and exits 1.
- Everything else (RuntimeError from torch, NCCL/gloo errors, shape errors, bugs): a real
  failure. The CLI lets it propagate, so Python prints the traceback and exits 1.
"""
from __future__ import annotations

import re

EXIT_USAGE = 2
EXIT_OUT_OF_MEMORY = 1


class UserError(ValueError):
    """Bad input that the code raises deliberately; its message names the file/option and what
    to do. Subclass it (``class DataFormatError(UserError)``) rather than raising bare
    ValueError/RuntimeError for input problems."""


# allocator messages: CUDA ("CUDA out of memory. Tried to allocate ..."), the CUDA runtime
# ("CUDA error: out of memory"), cuBLAS/cuDNN ("CUBLAS_STATUS_ALLOC_FAILED",
# "CUDNN_STATUS_ALLOC_FAILED"), HIP/XPU/MPS ("... out of memory"), NCCL ("Cuda failure 'out of
# memory'", ncclSystemError ... "out of memory"), and the CPU allocator ("DefaultCPUAllocator:
# not enough memory: you tried to allocate ...", "can't allocate memory")
_OOM_PATTERNS = re.compile(
    r"out of memory|DefaultCPUAllocator: not enough memory|can't allocate memory|"
    r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|failed to allocate memory",
    re.IGNORECASE)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError (CUDA and other accelerators), MemoryError, and the
    RuntimeErrors whose message is an allocator's out-of-memory report, also when they are the
    ``__cause__``/``__context__`` of the exception raised."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError",
                                                                   None)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if oom_type is not None and isinstance(exc, oom_type):
            return True
        if isinstance(exc, MemoryError):
            return True
        if isinstance(exc, RuntimeError) and _OOM_PATTERNS.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def out_of_memory_message(exc: BaseException) -> str:
    """What to tell the user after an out-of-memory error: the allocator's first line, then
    the settings that lower per-device memory, the biggest levers first."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(first) > 300:
        first = first[:300] + " ..."
    return "\n".join([
        f"error: out of memory: {first}",
        "  per-device memory goes down with:",
        "  - a smaller --batch-size (keep the effective batch with --grad-accum)",
        "  - a shorter --max-seq-len, and a shorter --prefix-len (prefix keys/values per layer)",
        "  - --gradient-checkpointing (recompute activations in the backward pass; off by "
        "default)",
        "  - ZeRO-3 (--deepspeed ds_configs/zero3_fp16.json) or CPU offload "
        "(ds_configs/zero3_offload_fp16.json), or more GPUs under ZeRO-3",
        "  check a setting before running it: ptv2 plan --model MODEL --gpu-mem 40GB "
        "--seq-len S --micro-batch B --prefix-len P [--gradient-checkpointing]",
    ])


from glm.errors import GLMUserError  # noqa: E402  (glm's bad checkpoint/tokenizer/config)

USER_ERRORS = (UserError, GLMUserError, FileNotFoundError)  # the CLI's exit-2 exceptions
