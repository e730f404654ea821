"""The commit protocol: which consumed offsets may be committed, when, and how.

An offset is committed only when everything before it is safe: no event below it
waits for its user's recommendation (the pipeline's `unanswered` low watermarks: the
users waiting for a batch and those in the model stage), and every record sent
before the offsets were taken (recommendations, dead letters, changelog records) is
acknowledged by the broker. A record that fails stops the protocol: nothing is
committed past it, then or later, and a restart re-reads it (docs/RELIABILITY.md).

Commits happen every `commit_interval_ms`, like Kafka Streams; acknowledgements are
collected on every turn of the loop as they arrive. Without exactly-once a commit
never stops the loop: when one is due the offsets are taken with the publisher's
next sequence number, and committed once every record below it is acknowledged.
With exactly-once each commit interval is one transaction, which carries the offsets
(`send_offsets_to_transaction`). At shutdown and before a rebalance the protocol
waits for every acknowledgement instead (`commit_now`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import Consumer, TopicPartition
from streamrec.worker.errors import PublishError
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.publish import Acked, Publisher

logger = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]


class Commits:
    """The consumed and committed positions of one topic's partitions, and their commits.

    `unanswered()` gives, per partition, the lowest offset whose recommendation is not
    sent yet; `publish_in_hand()` sends what the model stage holds, so that a blocking
    commit takes it along; `on_acked(acked)` counts what the broker acknowledged, and
    `on_commit()` runs after every commit point (the worker applies its user cap).
    """

    def __init__(
        self, consumer: Consumer, publisher: Publisher, topic: str, *,
        interval_ms: float, exactly_once: bool, metrics: WorkerMetrics,
        unanswered: Callable[[], dict[int, int]],
        publish_in_hand: Callable[[], None] = lambda: None,
        on_acked: Callable[[Acked], None] = lambda acked: None,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.topic = topic
        self.interval_s = interval_ms / 1000.0
        self.exactly_once = exactly_once
        self.metrics = metrics
        self._unanswered = unanswered
        self._publish_in_hand = publish_in_hand
        self._on_acked = on_acked
        self._on_commit = on_commit
        self._clock = clock
        self.consumed: dict[int, int] = {}  # partition -> next offset to read
        self.committed: dict[int, int] = {}  # partition -> last committed offset
        self._next_commit = 0.0  # clock time the next commit is due
        # Offsets waiting for their records' acknowledgements, and the sequence number
        # every record below which must be acknowledged first.
        self._pending: tuple[Offsets, int] | None = None
        self.failed = False  # a record was refused: nothing more is committed
        # Clock time of the first failed commit since the last one that went through
        # (None: the last commit succeeded), and the last failure: the watchdog's view.
        self.failing_since: float | None = None
        self.last_error = ""

    # -- positions -----------------------------------------------------------------

    def consumed_up_to(self, partition: int, next_offset: int) -> None:
        """Records of `partition` before `next_offset` have been ingested."""
        self.consumed[partition] = next_offset

    def forget(self, partition: int) -> None:
        """Drop a partition this worker no longer owns, also from a commit in waiting."""
        self.consumed.pop(partition, None)
        self.committed.pop(partition, None)
        if self._pending is not None:
            self._pending[0].pop(TopicPartition(self.topic, partition), None)

    def uncommitted(self) -> bool:
        """True when some partition was read past its last commit."""
        return any(self.committed.get(p) != o for p, o in self.consumed.items())

    def until_due(self) -> float:
        """Seconds until offsets are next taken for a commit (0 when due now); infinite
        when nothing waits to be committed or taken offsets wait for acknowledgements."""
        if self._pending is not None or not self.uncommitted():
            return float("inf")
        return max(0.0, self._next_commit - self._clock())

    def _due(self) -> bool:
        return self._clock() >= self._next_commit

    def _to_commit(self) -> Offsets:
        """Per partition, up to the first event whose recommendation is not yet sent;
        partitions whose position did not move since the last commit are left out."""
        marks = self._unanswered()
        offsets = {}
        for partition, consumed in self.consumed.items():
            position = marks.get(partition, consumed)
            if position != self.committed.get(partition):
                offsets[TopicPartition(self.topic, partition)] = position
        return offsets

    # -- the protocol ----------------------------------------------------------------

    def update(self) -> None:
        """Take the acknowledgements that have arrived and commit what they allow.

        Called on every turn of the poll loop; never waits, except for an exactly-once
        commit (its transaction). Raises `PublishError` when a record was refused.
        """
        if self.failed:
            return
        self._on_acked(self._confirmed(self.publisher.collect))
        if self.exactly_once:
            if self._due() and (self.uncommitted() or self.publisher.inflight):
                self.commit_now()
            return
        if self._pending is not None:
            offsets, barrier = self._pending
            if self.publisher.confirmed(barrier):
                self._pending = None
                self._finish(offsets, self._commit(offsets))
        elif self._due() and self.uncommitted():
            self._next_commit = self._clock() + self.interval_s
            offsets = self._to_commit()
            if offsets:
                self._pending = (offsets, self.publisher.sent)

    def commit_now(self, consumer_commit: bool = True) -> None:
        """Wait for every acknowledgement, then commit: at shutdown, before a rebalance,
        and every interval with exactly-once.

        State needs no write here: each batch wrote its users' changelog records, and a
        user changed since is unanswered, so its offsets are held back. With
        exactly-once the records since the last commit and the offsets are one
        transaction. `consumer_commit=False` skips the consumer's own commit (not
        allowed inside its rebalance callback); a transaction still carries them.
        """
        if self.failed:
            return
        start = time.perf_counter()
        self._pending = None  # superseded: the offsets are taken afresh
        self._publish_in_hand()
        eos = self.exactly_once
        offsets = self._to_commit() if eos or consumer_commit else {}
        if eos:
            acked = self._confirmed(lambda: self.publisher.commit_transaction(
                offsets, self.consumer.group_metadata()))
        else:
            acked = self._confirmed(self.publisher.flush)
        self._on_acked(acked)
        self._next_commit = self._clock() + self.interval_s
        self._finish(offsets, eos or self._commit(offsets))
        self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - start)

    def abort(self) -> None:
        """The session expired: abort the open transaction, whose writes could race the
        partitions' new owner."""
        if self.exactly_once:
            self.publisher.abort_transaction()

    def halt(self) -> None:
        """Commit nothing more (a record or a request was refused)."""
        self.failed = True
        self._pending = None

    def _finish(self, offsets: Offsets, committed: bool) -> None:
        """Book a commit point's offsets (if they were committed) and run `on_commit`."""
        if committed and offsets:
            for tp, offset in offsets.items():
                self.committed[tp.partition] = offset
            self.metrics.commits.inc()
        self._on_commit()

    def _confirmed(self, confirm: Callable[[], Acked]) -> Acked:
        """`confirm()` (collect, flush or commit the transaction), counting failures: a
        `PublishError` halts the protocol before any offset past the failed record is
        committed."""
        try:
            return confirm()
        except PublishError as exc:
            self.halt()
            for kind in exc.kinds:
                self.metrics.publish_failures.labels(kind).inc()
            raise

    def _commit(self, offsets: Offsets) -> bool:
        """The consumer's commit; a failure (broker away, rebalance) is logged and the
        same offsets are taken again at the next commit interval.

        Nothing is lost by a failed commit: the records are acknowledged, state is in
        the changelog, and the next commit (or the partition's next owner, which
        skips events already applied) covers the same offsets.
        """
        if not offsets:
            return False
        start = time.perf_counter()
        try:
            self.consumer.commit(offsets)
        except KafkaClientError as exc:
            self.metrics.commit_failures.inc()
            if self.failing_since is None:
                self.failing_since = self._clock()
            self.last_error = str(exc)
            logger.warning("offset commit failed (%s); will commit again at the next "
                           "commit interval", exc)
            return False
        self.failing_since = None
        self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - start)
        return True
