"""Micro-batching of users whose history changed, one query per user per batch.

Every valid event marks its user *pending*. A batch is cut when `max_batch` users
are pending or the oldest pending user has waited `max_wait_ms`; it holds each user
once, and the encoder then reads that user's latest history, so ten events of one
user in a poll cost one query, not ten. Users are served oldest-pending first.

The batcher also knows what may be committed: per partition, the lowest offset of
an event whose user is still pending. Committing below it guarantees a restart
re-reads every event whose recommendation was not yet published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class Pending:
    """A user waiting for a recommendation."""

    first_offset: int  # lowest events-topic offset not yet covered by a publish
    event_ts: int  # the latest event's own `ts` (epoch ms): published as `event_ts`
    record_ts: int  # the latest event's record timestamp (epoch ms): latency is measured from it
    since: float  # monotonic time the user became pending


@dataclass(frozen=True)
class BatchItem:
    """One row of a batch: a user and the times of the newest event that changed it."""

    partition: int
    user_id: str
    event_ts: int
    record_ts: int = 0
    first_offset: int = 0  # lowest events-topic offset this row answers


def lower_watermarks(marks: dict[int, int], items: Iterable[BatchItem]) -> dict[int, int]:
    """`marks` (per partition, the lowest offset whose recommendation is not yet
    sent) lowered to the first offsets of `items`, rows not sent yet; returns them."""
    for item in items:
        if item.first_offset < marks.get(item.partition, item.first_offset + 1):
            marks[item.partition] = item.first_offset
    return marks


class MicroBatcher:
    """Pending users keyed by (partition, user), in the order they became pending."""

    def __init__(self, max_batch: int, max_wait_ms: float) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._pending: dict[tuple[int, str], Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, partition: int, user_id: str, offset: int, event_ts: int,
            now: float | None = None, record_ts: int = 0) -> None:
        """Mark a user pending after an event at `offset` changed its history."""
        key = (partition, user_id)
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = Pending(offset, event_ts, record_ts,
                                         time.monotonic() if now is None else now)
        else:
            entry.event_ts = max(entry.event_ts, event_ts)
            entry.record_ts = max(entry.record_ts, record_ts)

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until the oldest pending user is due (0 when a batch is ready)."""
        if not self._pending:
            return self.max_wait_s
        if len(self._pending) >= self.max_batch:
            return 0.0
        now = time.monotonic() if now is None else now
        oldest = next(iter(self._pending.values())).since
        return max(0.0, oldest + self.max_wait_s - now)

    def ready(self, now: float | None = None) -> bool:
        """True when a batch should be cut now."""
        return bool(self._pending) and self.wait_time(now) == 0.0

    def take(self) -> list[BatchItem]:
        """Remove and return up to `max_batch` users, oldest pending first."""
        batch: list[BatchItem] = []
        for key in list(self._pending)[: self.max_batch]:
            entry = self._pending.pop(key)
            batch.append(BatchItem(key[0], key[1], entry.event_ts, entry.record_ts,
                                   entry.first_offset))
        return batch

    def drop_partition(self, partition: int) -> int:
        """Forget pending users of a partition this worker no longer owns; returns how many."""
        keys = [k for k in self._pending if k[0] == partition]
        for key in keys:
            del self._pending[key]
        return len(keys)

    def low_watermarks(self) -> dict[int, int]:
        """Per partition, the lowest offset whose recommendation is not yet published."""
        marks: dict[int, int] = {}
        for (partition, _), entry in self._pending.items():
            if entry.first_offset < marks.get(partition, entry.first_offset + 1):
                marks[partition] = entry.first_offset
        return marks
