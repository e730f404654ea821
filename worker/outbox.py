"""A finished batch on its way out: a slice of its users per turn of the poll loop.

Building and handing a batch's records to the client costs the loop about 25 us of
CPU per user. A batch of 1,024 users (a catch-up, or a 1M-item model near its
capacity) took 60-180 ms of wall time on the 2-core box with the model thread and the
broker beside it, and meanwhile the loop neither polled nor counted acknowledgements:
the longest gaps between its polls were these publications (docs/BENCHMARKS.md,
2026-12-06 15:15). So a batch goes out `PUBLISH_SLICE` users at a time, the loop
polling between two slices.

What does not change: a user's recommendation counts as unanswered until its slice
is sent (commits hold below its first offset, `low_watermarks`); the batch's changelog
records go right after its last slice; the next batch is taken from the model stage
only once this one is all out, so each user's recommendations keep the order of its
events; and whatever is left goes at once when a commit must take it along, at a
rebalance or at shutdown (`send(everything=True)`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from streamrec.worker.batcher import BatchItem, lower_watermarks
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.model_stage import ModelJob
from streamrec.worker.publish import Publisher
from streamrec.worker.recommend import Recommender
from streamrec.worker.state.durable import DurableHistories

PUBLISH_SLICE = 256  # users of a finished batch sent per turn of the poll loop


class Outbox:
    """The finished batch being published, and how much of it is out."""

    def __init__(self, publisher: Publisher, state: DurableHistories, metrics: WorkerMetrics,
                 owned: Callable[[], Collection[int]], model: Callable[[], Recommender],
                 explain_top: int, progressed: Callable[[], None] = lambda: None,
                 slice_users: int = PUBLISH_SLICE) -> None:
        """`owned()`: the partitions the worker owns now (a slice drops the users of
        the others: lost while their batch was in the model or on its way out);
        `model()`: the model serving now, whose version a batch put in carries (a swap
        waits for the outbox to be empty); `progressed()`: told after every slice (the
        watchdog's progress)."""
        if slice_users < 1:
            raise ValueError(f"slice_users must be >= 1, got {slice_users}")
        self.publisher = publisher
        self.state = state
        self.metrics = metrics
        self.owned = owned
        self.model = model
        self.explain_top = explain_top
        self.progressed = progressed
        self.slice_users = slice_users
        self._job: ModelJob | None = None
        self._version = ""  # the model version the batch was computed with
        self._sent = 0  # rows of the batch already sent

    @property
    def busy(self) -> bool:
        """True while some of a batch is still to be sent."""
        return self._job is not None

    @property
    def users(self) -> int:
        """Users of the batch whose recommendation is not sent yet."""
        return 0 if self._job is None else len(self._job.batch) - self._sent

    def low_watermarks(self, marks: dict[int, int]) -> dict[int, int]:
        """`marks` lowered to the first offsets of the users not sent yet; returns them."""
        return lower_watermarks(marks, self._unsent())

    def put(self, job: ModelJob, everything: bool = False) -> None:
        """Take a finished batch and send its first slice (all of it with `everything`);
        the outbox must be empty."""
        if self._job is not None:
            raise RuntimeError("the outbox holds a batch already")
        self.metrics.stage_seconds.labels("encode").observe(job.encode_s)
        self.metrics.stage_seconds.labels("search").observe(job.search_s)
        self._job, self._version, self._sent = job, self.model().model_version, 0
        self.send(everything)

    def send(self, everything: bool = False) -> None:
        """Send the next slice of the batch (the rest of it with `everything`); the
        changelog records of the whole batch follow its last slice."""
        job = self._job
        if job is None:
            return
        start = time.perf_counter()
        end = len(job.batch) if everything else min(len(job.batch), self._sent + self.slice_users)
        last = end == len(job.batch)
        whole = self._sent == 0 and last
        part = job if whole else job.part(self._sent, end, job.changes if last else [])
        owned = self.owned()
        part.keep([b.partition in owned for b in part.batch])
        if part.batch and part.recs is not None:
            self.publisher.send_recommendations(
                part.batch, part.recs, part.histories, self.state.items.ids, self._version,
                self.explain_top)
            self.state.recommended([(b.partition, b.user_id) for b in part.batch],
                                   part.recs.rows)
        if last:
            self.state.write_changes(self.publisher, job.changes, owned)
            self._job = None
        self._sent = end
        self.metrics.stage_seconds.labels("publish").observe(time.perf_counter() - start)
        self.progressed()

    def _unsent(self) -> list[BatchItem]:
        return [] if self._job is None else self._job.batch[self._sent:]

