"""How many OpenMP threads FAISS may use, on every thread that searches.

OpenMP keeps its thread count per calling thread: `faiss.omp_set_num_threads(1)` on
the main thread leaves a thread started later at OpenMP's default, one per core. The
worker searches on its model thread and measures a new version's recall on its
loader thread, so with `--torch-threads 1` an IVF search there still ran on both
cores of the 2-core box (process CPU twice the wall time: docs/BENCHMARKS.md,
2026-12-06), beside the poll loop and the broker that the setting keeps a core for.

`set_threads(n)` records the count for the process and applies it to the calling
thread; `for_this_thread(n)` gives one thread its own count (the worker's model
thread: `--index-threads`); the FAISS indexes call `apply()` before each search, which
sets the thread's count once (a thread-local check, well under a microsecond).
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
    _local.own = threads if threads > 0 else len(os.sched_getaffinity(0))
    apply()


def apply() -> None:
    """Give the calling thread its count (its own, else the recorded one), if it does
    not have it yet."""
    wanted = getattr(_local, "own", 0) or _wanted
    if wanted and getattr(_local, "threads", 0) != wanted:
        faiss.omp_set_num_threads(wanted)
        _local.threads = wanted
