"""Backpressure: pause fetching while too many users wait for a batch, resume at half.

Without it the poll loop reads as fast as Kafka delivers while the model stage is
behind: every waiting user is held in memory (past `--max-users`, which only evicts
users already served) and a catch-up folds many events into one recommendation.
Paused, the backlog stays in Kafka, as consumer lag. Resuming at half the limit, not
just below it, keeps the consumer from flapping between paused and fetching on every
poll while the model stage works the backlog down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class PausableConsumer(Protocol):
    """The part of the Kafka port's `Consumer` the policy drives."""

    def assignment(self) -> Iterable[Any]: ...

    def paused(self) -> Iterable[Any]: ...

    def pause(self, partitions: Iterable[Any]) -> None: ...

    def resume(self, partitions: Iterable[Any]) -> None: ...


class Backpressure:
    """Pauses the consumer at `limit` pending users, resumes it at `limit // 2`."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the pending-user limit must be >= 1, got {limit}")
        self.limit = limit
        self.paused = False  # fetching paused: too many users wait for a batch
        self._stale = False  # the assignment changed since the partitions were paused

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
        return started
