"""Keep freed memory in a worker's heap while it trains, and give it back after each run.

Why: glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
`mmap` and returns it with `munmap` on free. A training step of a small transformer allocates
and frees dozens of such tensors (attention scores alone are batch x heads x length² floats,
~100 MB at batch 32 and 256 tokens), so every step maps, zero-fills and unmaps gigabytes, and
much of a step's wall time is the kernel doing that (`sys` time; the README's "Performance"
section has the measured figures). Serving those allocations from the
heap and never trimming it during a run removes that cost without touching the numbers the
model computes. The process also keeps one malloc arena: a thread otherwise allocates from an
arena of its own, made of 64 MiB mmapped heaps that glibc unmaps as soon as they are empty —
the same churn again, on the thread that trains. One arena costs little here: a run's thread
does the allocating, and Python objects come from CPython's own allocator.

The price is that freed memory stays with the process, so `release_freed_memory` (glibc's
`malloc_trim`) is called after every run: an idle worker holds only what it uses.

Only glibc has these knobs; elsewhere (macOS, musl, Windows) both calls do nothing and say so.
The settings are process-wide and permanent, so they are applied where a process is about to
run tasks (the worker start-up), not per task.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from typing import Literal

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

AllocatorMode = Literal["retain-heap", "system"]

_lock = threading.Lock()
_mode: AllocatorMode = "system"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (which has mallopt and malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into this process
    except (OSError, TypeError):  # TypeError: Windows has no such handle
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def retain_freed_memory() -> AllocatorMode:
    """Serve large allocations from the heap and stop trimming it; idempotent.

    Returns the mode now in force: `retain-heap`, or `system` where the C library is not glibc
    or refused a setting (a refused setting keeps its old value).

    Threads that allocated before this call keep the arenas they have, so call it before a
    process starts its threads (`embtune.runtime.prepare_task_process`).
    """
    global _mode
    with _lock:
        if _mode == "retain-heap":
            return _mode
        libc = _glibc()
        if libc is None:
            return _mode
        # -1 as the trim threshold means "never trim" (mallopt(3)); mallopt returns 1 on success.
        settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
        if not all(libc.mallopt(param, value) == 1 for param, value in settings):
            log.warning("glibc refused the allocator settings; keeping its defaults")
            return _mode
        _mode = "retain-heap"
        return _mode


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the OS (glibc `malloc_trim`); False where unsupported.

    Safe at any time and from any thread: it only returns pages no allocation is using.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def mode() -> AllocatorMode:
    """What this process's allocator does with freed memory: reported with a run's figures."""
    return _mode
