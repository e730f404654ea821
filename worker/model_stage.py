"""The model stage on its own thread, so encoding overlaps with Kafka work.

torch releases the GIL inside its kernels, and the encoder and the index search
are most of a batch's time; kafka-python's consuming, record building and sending
are pure Python. Running the model on a thread of its own lets the poll loop
ingest the next records and send the previous batch while the current one is
encoded. One batch is in the stage at a time, and batches are published in the
order they were cut, so a user's recommendations keep the order of its events.
A small batch can be computed inline, on the caller's thread (`submit(inline=True)`).

Each return from a torch call takes the GIL back, and while the poll loop runs
Python that waits for the interpreter's switch interval (5 ms by default) before
the loop is made to let go. A batch makes a handful of such calls, so at 5 ms the
stage ran at a third of its speed beside a busy loop. The worker shortens the
interval to `SWITCH_INTERVAL_S` when its Kafka client does its I/O in C threads
(confluent-kafka); kafka-python's network thread is Python too, and a short interval
had the loop and that thread trading the GIL: at 0.5 ms a kafka-python worker fell
behind at 1,949 events/s (p50 2.8 s, docs/BENCHMARKS.md, 2026-12-01).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from streamrec.worker.batcher import BatchItem, lower_watermarks
from streamrec.worker.recommend import Recommendations, Recommender, set_faiss_threads
from streamrec.worker.state.durable import Changes

logger = logging.getLogger(__name__)

# The GIL switch interval for a worker on confluent-kafka. Measured (2026-12-03, the
# 2-core box, games model, batches of 1,024 distinct users of 1-5 events, 1 thread)
# with a thread spinning in Python beside the stage: 7,300-7,800 users/s at Python's
# 5 ms, 8,800-16,000 at 1 ms, 15,000-19,000 at 0.5 ms, 20,000-21,500 at 0.2 ms;
# 23,500-24,300 alone. The loop pays a thread switch per hand-off, a few per batch.
# In the worker itself (2026-12-06, Xeon with AMX, the distinct-users backlog of bench
# e2e's b', alternating runs on one broker): 15,549 recommendations/s on average at
# 0.2 ms (6 runs, 14,623-16,674), 16,971 at 0.1 ms (5 runs, 15,855-17,635), 16,718 at
# 0.05 ms; half-load latency no different at 0.1 ms (4 pairs at 5,159 events/s).
SWITCH_INTERVAL_S = 0.0001


def switch_interval(client: str) -> float | None:
    """The GIL switch interval a worker on Kafka adapter `client` sets (None: Python's)."""
    return SWITCH_INTERVAL_S if client == "confluent" else None


@dataclass
class ModelJob:
    """One batch through the model: its rows in, its recommendations out."""

    batch: list[BatchItem]
    histories: np.ndarray  # [B, L] snapshot taken when the batch was cut
    lengths: np.ndarray  # [B]
    changes: list[Changes] = field(default_factory=list)  # state to write with the batch
    recs: Recommendations | None = None
    error: BaseException | None = None
    encode_s: float = 0.0
    search_s: float = 0.0

    def keep(self, owned: list[bool]) -> None:
        """Drop the finished batch's users where `owned` is False (their partition was
        taken away while the batch was in the model)."""
        if all(owned) or self.recs is None:
            return
        rows = np.array(owned)
        self.batch = [b for b, k in zip(self.batch, owned, strict=True) if k]
        self.histories = self.histories[rows]
        self.recs = self.recs.select(rows)

    def part(self, start: int, end: int, changes: list[Changes]) -> ModelJob:
        """Users start..end of the finished batch as a job of their own, with `changes`."""
        users = slice(start, end)
        return ModelJob(self.batch[users], self.histories[users], self.lengths[users], changes,
                        None if self.recs is None else self.recs.select(users))


class ModelStage:
    """A single worker thread that encodes and searches one `ModelJob` at a time."""

    def __init__(self, recommender: Recommender, k: int, fresh_slots: int = 0,
                 switch_interval_s: float | None = None, search_threads: int = 0) -> None:
        """`switch_interval_s`: the GIL switch interval to set for the process (at most;
        None leaves it), see the module's docstring. `search_threads`: FAISS's threads on
        the stage's thread (0: every core; `--index-threads`)."""
        self.recommender = recommender
        self.search_threads = search_threads
        self.k = k
        self.fresh_slots = fresh_slots  # of the k places, kept for items embedded live
        self._job: ModelJob | None = None  # in the stage until taken
        self._todo: ModelJob | None = None  # handed to the thread, not yet picked up
        self._ready = threading.Event()  # the job in hand is finished
        self._wake = threading.Condition()
        self._closed = False
        if switch_interval_s is not None:
            sys.setswitchinterval(min(sys.getswitchinterval(), switch_interval_s))
        self._thread = threading.Thread(target=self._run, name="streamrec-model", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while a job is in the stage (finished or not) and not yet taken."""
        return self._job is not None

    @property
    def batch(self) -> list[BatchItem]:
        """The batch in the stage (not yet taken), or an empty list."""
        job = self._job
        return job.batch if job is not None else []

    def low_watermarks(self, marks: dict[int, int]) -> dict[int, int]:
        """`marks` (per partition, the lowest offset whose recommendation is not yet
        sent) lowered to the first offsets of the batch in the stage; returns them."""
        return lower_watermarks(marks, self.batch)

    def submit(self, job: ModelJob, inline: bool = False) -> None:
        """Hand a batch to the model thread; the stage must be empty.

        `inline` computes it on the caller's thread instead, finished on return: for
        a small batch the thread's hand-offs cost more than the overlap gains (each
        return from a torch kernel waits for the GIL while the poll loop runs Python).
        """
        if self._job is not None:
            raise RuntimeError("the model stage holds a batch already")
        if inline:
            self._compute(job)
            with self._wake:  # nothing handed to the thread: it stays asleep
                self._ready.set()
                self._job = job
            return
        with self._wake:
            self._ready.clear()
            self._job = self._todo = job
            self._wake.notify()

    def wait(self, timeout_s: float) -> bool:
        """Block (the GIL released) until the job in hand is finished or `timeout_s`
        passed; True when it is finished."""
        return self._job is not None and self._ready.wait(timeout_s)

    def take(self, timeout_s: float | None = 0.0) -> ModelJob | None:
        """The finished job (re-raising its error), or None if it is not done in time."""
        job = self._job
        if job is None or not self._ready.wait(timeout_s):
            return None
        with self._wake:
            self._job = None
        if job.error is not None:
            raise job.error
        return job

    def close(self) -> None:
        """Stop the thread (after the job in hand, if any)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        set_faiss_threads(self.search_threads, own=True)
        while True:
            with self._wake:
                while not self._closed and self._todo is None:
                    self._wake.wait()
                if self._closed:
                    return
                job, self._todo = self._todo, None  # exactly what `submit` handed over
            self._compute(job)
            self._ready.set()

    def _compute(self, job: ModelJob) -> None:
        """Encode and search one batch; an error is kept in the job for `take`."""
        try:
            t0 = time.perf_counter()
            model = self.recommender  # swapped only while the stage is empty
            # What is published (explanations) speaks of the histories the model read.
            full = job.histories  # with the rows the model does not know: live items
            job.histories, job.lengths = model.known(job.histories, job.lengths)
            encoded = model.encode(job.histories, job.lengths)
            t1 = time.perf_counter()
            job.recs = model.search(encoded, job.histories, self.k, full, self.fresh_slots)
            job.encode_s, job.search_s = t1 - t0, time.perf_counter() - t1
        except BaseException as exc:  # handed to the poll loop, which stops
            job.error = exc
