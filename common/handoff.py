"""A thread started once that runs the work a latency loop hands it, in order.

`Thread.start` does not return until the new thread runs, and on a busy 2-core box
(the broker, the model thread and a load generator on the same cores) a worker's
poll loop was sampled waiting there 136-143 ms to start the thread of one offset
commit (docs/BENCHMARKS.md, 2026-12-07). So the worker starts its helper threads
with itself, and the loop hands them work through a queue: a put, never a wait.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Handoff:
    """A daemon thread named `name` running the calls `submit` hands it, one at a time.

    Daemon: a call that never returns (a broker that never answers) cannot keep the
    process from exiting; the calls handed after it wait their turn. An exception a
    call raises ends that call only: it is logged, the thread goes on (a call that
    must report its failure keeps it itself)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], threading.Event] | None] = \
            queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, call: Callable[[], object]) -> threading.Event:
        """Queue `call`; returns at once an event that is set once it has run."""
        done = threading.Event()
        self._calls.put((call, done))
        return done

    def close(self) -> None:
        """End the thread once the calls already handed are done (not waited for)."""
        self._calls.put(None)

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            call, done = item
            try:
                call()
            except Exception:
                logger.exception("a call handed to the %s thread failed", self.name)
            finally:
                done.set()
