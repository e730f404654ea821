"""How many OpenMP threads FAISS may use, on every thread that searches.

OpenMP keeps its thread count per calling thread: `faiss.omp_set_num_threads(1)` on
the main thread leaves a thread started later at OpenMP's default, one per core. So
`--torch-threads 1`, set where the worker starts, never reached its model thread,
whose IVF searches ran on both cores of the 2-core box (process CPU twice the wall
time). Measured, that was the better setting for a million-item worker there: on one
thread its maximum live load fell by 17% (docs/BENCHMARKS.md, 2026-12-06 01:35). So
the model thread now has a count of its own, `--index-threads` (every core by
default), and every other thread that searches or builds (the loop's small inline
batches, a new version's recall measured on the loader thread) the process's.

`set_threads(n)` records the process's count and applies it to the calling thread;
`for_this_thread(n)` gives one thread its own; the FAISS indexes call `apply()`
before each search, which sets the thread's count once (a thread-local check, well
under a microsecond).
"""

from __future__ import annotations

import os
import threading

import faiss

_wanted = 0  # 0: OpenMP's own default (a thread per core)
_local = threading.local()


def set_threads(threads: int) -> None:
    """FAISS's OpenMP threads for every thread that searches from now on (0: leave
    OpenMP's default)."""
    global _wanted
    _wanted = max(0, threads)
    apply()


def for_this_thread(threads: int) -> None:
    """The calling thread's own count, whatever `set_threads` says (0: every core this
    process may run on, OpenMP's default)."""
    _local.own = threads if threads > 0 else _cores()
    apply()


def _cores() -> int:
    """The cores this process may run on (OpenMP's default count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def apply() -> None:
    """Give the calling thread its count (its own, else the recorded one), if it does
    not have it yet."""
    wanted = getattr(_local, "own", 0) or _wanted
    if wanted and getattr(_local, "threads", 0) != wanted:
        faiss.omp_set_num_threads(wanted)
        _local.threads = wanted
