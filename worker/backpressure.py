"""Backpressure: pause fetching while too many users wait for a batch, resume at half.

Without it the poll loop reads as fast as Kafka delivers while the model stage is
behind: every waiting user is held in memory (past `--max-users`, which only evicts
users already served) and a catch-up folds many events into one recommendation.
Paused, the backlog stays in Kafka, as consumer lag. Resuming at half the limit, not
just below it, keeps the consumer from flapping between paused and fetching on every
poll while the model stage works the backlog down.

Before the pause, the hold: from half the limit on, a loop whose client fetches on
threads of its own (librdkafka) leaves the records in the client's queue for up to
`HOLD_MAX_S` instead of taking them. librdkafka drops what it fetched for a partition
when it is paused and fetches it again on resume; on the b' stream of `bench e2e` the
model stage waited 150-600 ms for records after each resume, a pause every second. A
held backlog is read from memory the moment the pending users fall below half.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streamrec.worker.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

HOLD_MAX_S = 0.5  # the longest a hold goes without a poll (rebalance callbacks, errors)


class PausableConsumer(Protocol):
    """The part of the Kafka port's `Consumer` the policy drives."""

    def assignment(self) -> Iterable[Any]: ...

    def paused(self) -> Iterable[Any]: ...

    def pause(self, partitions: Iterable[Any]) -> None: ...

    def resume(self, partitions: Iterable[Any]) -> None: ...


class Backpressure:
    """Holds records from `limit // 2` pending users, pauses the consumer at `limit`,
    resumes it at `limit // 2`."""

    def __init__(self, limit: int, metrics: WorkerMetrics | None = None) -> None:
        """`metrics`: where pauses are counted and the paused state shown, if anywhere."""
        if limit < 1:
            raise ValueError(f"the pending-user limit must be >= 1, got {limit}")
        self.limit = limit
        self.metrics = metrics
        self.paused = False  # fetching paused: too many users wait for a batch
        self._stale = False  # the assignment changed since the partitions were paused
        self._polled_at = 0.0  # monotonic time of the last poll

    def holds(self, pending: int, now: float | None = None) -> bool:
        """True when the loop should leave the records in the client's queue this turn:
        half the limit waits and it polled less than `HOLD_MAX_S` ago."""
        now = time.monotonic() if now is None else now
        return pending >= self.limit // 2 and now - self._polled_at < HOLD_MAX_S

    def polled(self, now: float | None = None) -> None:
        """The loop polled for records."""
        self._polled_at = time.monotonic() if now is None else now

    def assigned(self) -> None:
        """Partitions were assigned (they start unpaused): pause them at the next
        `update` if fetching is paused."""
        self._stale = True

    def update(self, pending: int, consumer: PausableConsumer) -> bool:
        """Apply the policy for `pending` waiting users; True when it paused just now."""
        started = False
        if not self.paused and pending >= self.limit:
            self.paused = started = True
            logger.debug("pausing fetching: %d users wait for a batch (limit %d)",
                         pending, self.limit)
        elif self.paused and pending <= self.limit // 2:
            self.paused = False
            consumer.resume(consumer.paused())
        # Only when it changes: asking librdkafka for the assignment is a round trip to
        # its main thread, about 1 ms on the 2-core box, and this runs every loop turn.
        if self.paused and (started or self._stale):
            consumer.pause(consumer.assignment())
        self._stale = False
        if self.metrics is not None:
            if started:
                self.metrics.backpressure_pauses.inc()
            self.metrics.paused.set(1 if self.paused else 0)
        return started
