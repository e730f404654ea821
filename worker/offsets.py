"""Which events-topic offsets this worker may commit, and when: the commit policy.

Per owned partition it tracks the next offset to read (`consumed`) and the last
offset committed. What may be committed is, per partition, the consumed position,
held back to the first event whose user still waits for a batch (the batcher's low
watermark): a restart then re-reads every event whose recommendation was not yet
published. Commits happen every `commit_interval_ms` (and when forced: shutdown),
like Kafka Streams; records are acknowledged every batch regardless.
"""

from __future__ import annotations

import logging
import time

from streamrec.kafka_io.port import TopicPartition

logger = logging.getLogger(__name__)


class OffsetTracker:
    """Consumed and committed positions of one topic's partitions, and the commit clock."""

    def __init__(self, topic: str, commit_interval_ms: float) -> None:
        self.topic = topic
        self.interval_s = commit_interval_ms / 1000.0
        self.consumed: dict[int, int] = {}  # partition -> next offset to read
        self.committed: dict[int, int] = {}  # partition -> last committed offset
        self._next_commit = 0.0  # monotonic time the next commit is due

    def consumed_up_to(self, partition: int, next_offset: int) -> None:
        """Records of `partition` before `next_offset` have been ingested."""
        self.consumed[partition] = next_offset

    def uncommitted(self) -> bool:
        """True when some partition was read past its last commit."""
        return any(self.committed.get(p) != o for p, o in self.consumed.items())

    def due(self, now: float | None = None) -> bool:
        """True when the commit interval has passed since the last commit."""
        return (time.monotonic() if now is None else now) >= self._next_commit

    def until_due(self, now: float | None = None) -> float:
        """Seconds until the next commit is due (0 when it is)."""
        return max(0.0, self._next_commit - (time.monotonic() if now is None else now))

    def schedule_next(self) -> None:
        """A commit point has run: the next is due one interval from now."""
        self._next_commit = time.monotonic() + self.interval_s

    def to_commit(self, low_watermarks: dict[int, int]) -> dict[TopicPartition, int]:
        """Per partition, up to the first event still waiting for a batch; unchanged
        partitions are left out."""
        offsets = {}
        for partition, consumed in self.consumed.items():
            position = low_watermarks.get(partition, consumed)
            if position != self.committed.get(partition):
                offsets[TopicPartition(self.topic, partition)] = position
        return offsets

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        """`offsets` (the next offsets to read) are committed."""
        for tp, offset in offsets.items():
            self.committed[tp.partition] = offset

    def forget(self, partition: int) -> None:
        """Drop a partition this worker no longer owns."""
        self.consumed.pop(partition, None)
        self.committed.pop(partition, None)
