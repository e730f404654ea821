"""Background work that gives way: a duty cycle for a thread beside a latency loop.

A worker loads a new model version on a thread of its own while its poll loop and
model thread keep serving, on a box whose two cores the broker shares too. Left to
run, the loader takes a core for seconds and holds the GIL in every pure-Python step
(a million vocabulary entries), and the loop waits. Run at a lower OS priority, it is
worse: the kernel takes its core away while it holds the GIL, and the loop waits
until the loader runs again (a priority inversion; measured 132-339 ms gaps).

So the loader runs at the loop's priority but paced: its long loops call `pause()`
between short slices, and once the thread has used `slice_s` of CPU since its last
rest, `pause()` sleeps long enough to keep its share of one core at `duty`. A thread
that sleeps most of the time is also the one the kernel schedules first when it
wakes, so it rarely loses its core while it holds the GIL. `pause()` costs one
thread-local lookup on a thread that is not paced (a worker's start, training).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SLICE_S = 0.002  # CPU a paced thread uses between two rests

_local = threading.local()


class Pacer:
    """Keeps the calling thread's CPU at `duty` of one core, resting in `pause()`."""

    def __init__(self, duty: float, slice_s: float = SLICE_S) -> None:
        if not 0.0 < duty <= 1.0:
            raise ValueError(f"duty must be in (0, 1], got {duty}")
        self.duty = duty
        self.slice_s = slice_s
        self.rested_s = 0.0  # total time slept in `pause()`
        self._mark = time.thread_time()

    def pause(self) -> None:
        """Rest if this thread used a slice of CPU since the last rest."""
        used = time.thread_time() - self._mark
        if used < self.slice_s or self.duty >= 1.0:
            time.sleep(0)  # no rest yet, but the GIL to a thread that waits for it
            return
        rest = used * (1.0 - self.duty) / self.duty
        time.sleep(rest)
        self.rested_s += rest
        self._mark = time.thread_time()


@contextmanager
def paced(duty: float, slice_s: float = SLICE_S) -> Iterator[Pacer]:
    """Pace the calling thread's `pause()` points at `duty` inside the block."""
    before = getattr(_local, "pacer", None)
    _local.pacer = pacer = Pacer(duty, slice_s)
    try:
        yield pacer
    finally:
        _local.pacer = before


def current() -> Pacer | None:
    """The calling thread's pacer, None when it is not paced."""
    return getattr(_local, "pacer", None)


def pause() -> None:
    """A point where long work may rest: a no-op unless this thread is `paced`."""
    pacer = getattr(_local, "pacer", None)
    if pacer is not None:
        pacer.pause()
