"""Failure classification behind the CLI's exit codes (ptv2_ds.errors)."""
from __future__ import annotations

import pytest
import torch

from ptv2_ds.errors import UserError, is_out_of_memory, out_of_memory_message
from ptv2_ds.planner import PlanArgs, plan


def test_user_error_is_a_value_error_and_data_errors_are_bad_input():
    from ptv2_ds.tasks.readers import DataFormatError

    assert issubclass(UserError, ValueError)
    assert issubclass(DataFormatError, ValueError)
    # the planner's option checks are deliberate: UserError
    with pytest.raises(UserError, match="micro-batch"):
        plan(PlanArgs(micro_batch=0))


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.59 GiB "
                           "total capacity)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough "
                 "memory: you tried to allocate 85899345920 bytes."),
    RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously "
                 "reported"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error, NCCL "
                 "version 2.21.5\nncclUnhandledCudaError: Call to CUDA function failed.\n"
                 "Last error:\nCuda failure 'out of memory'"),
    MemoryError(),
])
def test_out_of_memory_is_recognised(exc):
    assert is_out_of_memory(exc)


def test_out_of_memory_as_the_cause_is_recognised():
    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        except torch.OutOfMemoryError as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        assert is_out_of_memory(outer)


@pytest.mark.parametrize("exc", [
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x32 and 64x2)"),
    RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited"),
    RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by "
                 "peer"),
    ValueError("bad flag"),
    KeyError("memory"),
])
def test_real_failures_are_not_out_of_memory(exc):
    assert not is_out_of_memory(exc)


def test_out_of_memory_message_says_what_to_lower():
    text = out_of_memory_message(torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB\nmore details"))
    assert text.startswith("error: out of memory: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "more details" not in text
    for flag in ("--batch-size", "--max-seq-len", "--prefix-len", "--gradient-checkpointing",
                 "ZeRO-3", "offload", "ptv2 plan", "--gpu-mem"):
        assert flag in text, flag
