"""Process-group set-up and tear-down that work for one plain process and under the DeepSpeed
launcher."""
from __future__ import annotations

import atexit
import os
import socket
import warnings
from datetime import timedelta

SHUTDOWN_BARRIER_TIMEOUT_S = 120.0


def ensure_dist_env() -> None:
    """Give a process that was not started by a launcher the variables ``deepspeed.comm``
    reads (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) for a world of one."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


SHM_OP = "deepspeed_shm_comm"  # DeepSpeed's shared-memory collectives for CPU ranks

# Deprecations that dependencies raise on our behalf and we cannot act on: DeepSpeed's ZeRO
# calls torch.distributed.all_gather_into_tensor / reduce_scatter_tensor, which torch marks
# deprecated (FutureWarning), on every step and rank, burying the job log's own lines.
# (category, message regex, module regex of the frame the warning is attributed to)
DEPENDENCY_WARNINGS = (
    (FutureWarning, r"`torch\.distributed\.[\w.]+` is deprecated", r"torch\.distributed(\.|$)"),
)


def quiet_dependency_warnings() -> None:
    """Ignore exactly the DEPENDENCY_WARNINGS (by category, message and module); every other
    warning still shows. Idempotent: warnings.filterwarnings drops a duplicate filter."""
    for category, message, module in DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def on_cpu() -> bool:
    """True when DeepSpeed's accelerator is the CPU (DS_ACCELERATOR=cpu or no GPU)."""
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name() == "cpu"


def prepare_cpu_collectives() -> None:
    """Call before ``deepspeed.init_distributed()``. On the CPU accelerator DeepSpeed JIT-compiles
    a shared-memory collective op (about 25 s, once per environment path) even for a single
    process, which has no collectives to speed up: mark it unavailable there. Several CPU ranks
    do use it, so say what the wait is for."""
    global _prepared
    quiet_dependency_warnings()
    from deepspeed.accelerator import get_accelerator

    if _prepared or get_accelerator().device_name() != "cpu":
        return
    _prepared = True
    import deepspeed.ops

    if world_size() == 1:
        deepspeed.ops.__compatible_ops__[SHM_OP] = False
        return
    _remove_stale_build_lock()
    if is_main():
        print("[ptv2] loading DeepSpeed's shared-memory op for CPU ranks (compiled on the first "
              "run in an environment, about 30 s; cached afterwards)", flush=True)
    atexit.register(_unlink_shm_buffer)  # the name is read at exit: the env is complete then


_prepared = False
STALE_LOCK_S = 600.0  # a compile of the op takes well under a minute


def _remove_stale_build_lock() -> None:
    """torch's extension builder serialises compiles with a lock file and waits for it
    forever; a process killed mid-compile leaves it behind and every later multi-rank CPU run
    hangs before training. A lock older than STALE_LOCK_S is removed, with a message."""
    try:
        import time

        from torch.utils.cpp_extension import _get_build_directory

        lock = os.path.join(_get_build_directory(SHM_OP, verbose=False), "lock")
        age = time.time() - os.path.getmtime(lock)
        if age > STALE_LOCK_S:
            os.unlink(lock)
            if is_main():
                print(f"[ptv2] removed a stale build lock {lock} ({age / 60:.0f} min old, "
                      "left by a killed compile)", flush=True)
    except (OSError, ImportError, AttributeError, TypeError):
        pass  # no lock (the usual case) or torch moved its private helper


HEAP_MMAP_THRESHOLD = 1 << 20  # bytes: larger blocks are mapped and unmapped on their own


def return_freed_memory_to_the_os() -> bool:
    """Make glibc give large freed blocks back to the OS at once (ZeRO-3 on CPU).

    Why: ZeRO-3 gathers each frozen module's full weights for its forward/backward and frees
    them again, every step, partly on communication threads. glibc raises its mmap threshold
    (up to 32 MB) after the first large frees, so the later gathers come from per-thread heaps
    that keep their high-water mark resident: measured on a GLM-Large shape, each of 2 ranks
    held more unique memory than 1 rank holding everything (docs/RESULTS.md). A fixed 1 MiB
    threshold maps every larger block separately and unmaps it when freed. Returns False where
    glibc's ``mallopt`` is not available (other C libraries manage this themselves)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, HEAP_MMAP_THRESHOLD)) and \
        bool(mallopt(m_trim_threshold, HEAP_MMAP_THRESHOLD))


def release_free_heap() -> bool:
    """Give the free pages inside glibc's heaps back to the OS (``malloc_trim(0)``).

    Why: blocks under the 1 MiB mmap threshold (activations of a small batch, biases, norms,
    Python objects) come from the heaps, and a heap only shrinks from its top; freed chunks
    below a live one stay resident. Under ZeRO-3 on CPU every step gathers, uses and frees
    modules in a different order, so the main heap's free-but-resident part grew to ~0.9 GB
    per rank on a GLM-Large shape (2 ranks, 30 steps); trimming after each optimizer step kept
    it at ~0.16 GB (docs/RESULTS.md). Returns False where glibc's ``malloc_trim`` is missing."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def init_distributed() -> None:
    """``deepspeed.init_distributed()``, then, for CPU ranks, remove this rank's shared-memory
    file right away: after a barrier every peer has mapped it (DeepSpeed's set-up opens all
    of them), and a mapping outlives its name, so even a rank killed later leaks nothing."""
    import deepspeed

    deepspeed.init_distributed()
    if world_size() > 1 and os.path.exists(shm_buffer_path()):
        import deepspeed.comm as dist

        dist.barrier()
        _unlink_shm_buffer()


def shm_buffer_path(rank_: int | None = None) -> str:
    """The /dev/shm file DeepSpeed's CPU shared-memory collectives create for a rank (named
    after the user id, MASTER_ADDR, MASTER_PORT and the rank, see its shm.cpp)."""
    r = rank() if rank_ is None else rank_
    return (f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_"
            f"{os.environ.get('MASTER_ADDR', '')}_{os.environ.get('MASTER_PORT', '')}_{r}")


def _unlink_shm_buffer(path: str | None = None) -> None:
    """DeepSpeed creates a 69 MB shared-memory file per CPU rank and never removes it: each
    multi-rank CPU run would leave them in /dev/shm (RAM) until reboot. Each rank removes its
    own at exit; peers that mapped it keep their mapping, so the order does not matter."""
    try:
        os.unlink(path or shm_buffer_path())
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def shutdown(barrier: bool = True, timeout_s: float = SHUTDOWN_BARRIER_TIMEOUT_S) -> bool:
    """End the process group in order; idempotent and never raises. Returns True when a
    process group was destroyed.

    Why: without it, the ranks reach interpreter finalisation with gloo's worker and socket
    threads alive and connected. A rank that exits first closes its sockets (rank 0 also
    the TCP store) while a peer still finalises; any gloo thread that then finishes a work item
    or handles the closed connection and has to release tensors that reference Python objects
    needs the GIL of a finalising interpreter, and the thread is torn down mid-C++ ("terminate
    called without an active exception", SIGABRT): the launcher reports a failure for a run
    that succeeded, and only sometimes.

    ``barrier=True`` (every rank reaches this point: success, preemption, divergence, a
    refused resume): first a barrier on every process group this rank belongs to (the world
    and DeepSpeed's clones), in creation order, each at most ``timeout_s``; a gloo barrier
    also waits for the work queued before it, so no collective is in flight and no rank
    leaves while a peer still talks to it. Then ``destroy_process_group()`` and a garbage
    collection, so what can be freed is freed while the interpreter is whole. Pass
    ``barrier=False`` where the peers may not arrive (an unexpected exception on one rank).
    If a barrier fails or times out, a peer is gone or stuck; destroying the groups would
    wait for its pending work, so they are left to process exit."""
    try:
        import torch.distributed as tdist

        if not (tdist.is_available() and tdist.is_initialized()):
            return False
        if barrier and tdist.get_world_size() > 1:
            for group in _groups(tdist):
                if not _barrier(tdist, group, timeout_s):
                    return False
        _destroy(tdist)
    except Exception:  # noqa: BLE001 - tear-down must never mask the real exit status
        return False
    try:
        import gc

        gc.collect()
    except Exception:  # noqa: BLE001
        pass
    return True


def _destroy(tdist) -> None:
    """Destroy every process group. Through ``deepspeed.comm`` when DeepSpeed set up the
    backend: it also drops the groups DeepSpeed caches (``deepspeed.utils.groups``), which
    would otherwise keep the destroyed groups' threads alive and hand a stale group to the
    next ``deepspeed.initialize`` in this process."""
    import sys

    comm = sys.modules.get("deepspeed.comm.comm")
    if comm is not None and getattr(comm, "cdb", None) is not None:
        try:
            comm.destroy_process_group()
        except Exception:  # noqa: BLE001 - fall back to torch's own tear-down
            pass
    if tdist.is_initialized():
        tdist.destroy_process_group()


def _groups(tdist) -> list:
    """Every process group of this rank, oldest first (the same order on every rank)."""
    try:
        from torch.distributed.distributed_c10d import _world

        names = dict(_world.pg_names)
        return sorted(names, key=lambda g: (0, int(names[g])) if str(names[g]).isdigit()
                      else (1, str(names[g])))
    except Exception:  # noqa: BLE001 - private API moved: the world group alone
        return [None]


def _barrier(tdist, group, timeout_s: float) -> bool:
    try:
        work = tdist.barrier(group=group, async_op=True)
        done = work.wait(timeout=timedelta(seconds=timeout_s))
        return done is None or bool(done)
    except Exception:  # noqa: BLE001 - a timeout or a peer that went away
        return False
