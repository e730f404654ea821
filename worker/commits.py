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
next sequence number, and committed once every record below it is acknowledged, on a
thread of its own where the client allows it (a `Handoff`; confluent), so that the
loop keeps polling while the broker answers (on the loop's thread, the consumer's
commit held it 80-252 ms when a busy broker answered late: docs/BENCHMARKS.md); the
offsets are booked as committed only once it has. One commit is in flight at a time.
With exactly-once each commit interval is one transaction, which carries the offsets
(`send_offsets_to_transaction`). At shutdown and before a rebalance the protocol
waits for the commit in flight and every acknowledgement instead (`commit_now`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from streamrec.common.handoff import Handoff
from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import Consumer, TopicPartition
from streamrec.worker.errors import PublishError
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.publish import Acked, Publisher

logger = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
SETTLE_S = 10.0  # the longest a blocking commit waits for the one in flight


class InFlight:
    """One consumer commit sent to the commit thread and not booked yet.

    The thread only calls `consumer.commit`; the loop books the answer (`error` None:
    committed) once `done()`.
    """

    def __init__(self, offsets: Offsets, started: float) -> None:
        self.offsets = dict(offsets)  # booked when answered; `forget` may drop some
        self._sent = dict(offsets)  # what the consumer commits
        self.started = started  # the protocol's clock
        self.seconds = 0.0  # how long the commit took
        self.error: Exception | None = None  # a KafkaClientError: logged, retried
        self._done = threading.Event()

    def run(self, consumer: Consumer) -> None:
        """Commit (on the commit thread); any exception is kept for the loop."""
        start = time.perf_counter()
        try:
            consumer.commit(self._sent)
        except Exception as exc:  # anything else is raised again on the loop's thread
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - start
            self._done.set()

    def done(self) -> bool:
        """True once the broker answered (or the client gave up)."""
        return self._done.is_set()

    def wait(self, timeout_s: float) -> bool:
        """Block until answered, at most `timeout_s`; True when it was."""
        return self._done.wait(timeout_s)


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
        # Commits leave the loop's thread where the client allows it: one thread, started
        # now, that takes them one at a time (the client has one commit at a time).
        self._thread = (Handoff("streamrec-commit") if consumer.commits_from_any_thread
                        else None)
        self._in_flight: InFlight | None = None  # a commit the broker has not answered
        self.failed = False  # a record was refused: nothing more is committed
        # Clock time of the first failed commit since the last one that went through
        # (None: the last commit succeeded), and the last failure: the watchdog's view.
        self._failing_since: float | None = None
        self._last_error = ""

    @property
    def failing_since(self) -> float | None:
        """Since when commits have not gone through: the first failure since the last
        success, or the start of the commit in flight (None: neither). The watchdog
        stops the worker when this gets older than `--max-stall-s`."""
        if self._in_flight is None:
            return self._failing_since
        if self._failing_since is None:
            return self._in_flight.started
        return min(self._failing_since, self._in_flight.started)

    @property
    def last_error(self) -> str:
        """The last commit's failure, or that the one in flight has no answer yet."""
        if self._last_error or self._in_flight is None:
            return self._last_error
        return "none; the commit in flight has no answer from the broker"

    # -- positions -----------------------------------------------------------------

    def consumed_up_to(self, partition: int, next_offset: int) -> None:
        """Records of `partition` before `next_offset` have been ingested."""
        self.consumed[partition] = next_offset

    def forget(self, partition: int) -> None:
        """Drop a partition this worker no longer owns, also from a commit in waiting."""
        self.consumed.pop(partition, None)
        self.committed.pop(partition, None)
        tp = TopicPartition(self.topic, partition)
        if self._pending is not None:
            self._pending[0].pop(tp, None)
        if self._in_flight is not None:  # sent already; not booked for a partition gone
            self._in_flight.offsets.pop(tp, None)

    def uncommitted(self) -> bool:
        """True when some partition was read past its last commit."""
        return any(self.committed.get(p) != o for p, o in self.consumed.items())

    def until_due(self) -> float:
        """Seconds until offsets are next taken for a commit (0 when due now); infinite
        when nothing waits to be committed, taken offsets wait for acknowledgements or a
        commit is in flight."""
        if self._pending is not None or self._in_flight is not None or not self.uncommitted():
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
        if self._in_flight is not None:
            if self._in_flight.done():
                self._book(self._in_flight)
        elif self._pending is not None:
            offsets, barrier = self._pending
            if self.publisher.confirmed(barrier):
                self._pending = None
                if self._thread is not None and offsets:
                    self._in_flight = InFlight(offsets, self._clock())
                    self._thread.submit(partial(self._in_flight.run, self.consumer))
                    # The commit point is now (every record before it acknowledged), not
                    # the broker's answer: the user cap needs only the changelog's acks.
                    self._on_commit()
                else:
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
        if self._in_flight is not None:  # answered before anything newer is committed
            self._settle(self._in_flight)
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
        # timed once, as a whole: the wait for acknowledgements and the commit
        self._finish(offsets, eos or self._commit(offsets, timed=False))
        self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - start)

    def abort(self) -> None:
        """The session expired: abort the open transaction, whose writes could race the
        partitions' new owner."""
        if self.exactly_once:
            self.publisher.abort_transaction()

    def halt(self) -> None:
        """Commit nothing more (a record or a request was refused). A commit already in
        flight carries offsets that were safe when taken; it is left to finish."""
        self.failed = True
        self._pending = None
        self._in_flight = None

    def close(self) -> None:
        """Let the commit thread end once the commits sent to it are done (the consumer
        is closed next; a commit still waiting for the broker is abandoned with it)."""
        if self._thread is not None:
            self._thread.close()

    def _finish(self, offsets: Offsets, committed: bool) -> None:
        """Book a commit point's offsets (if they were committed) and run `on_commit`."""
        self._record(offsets, committed)
        self._on_commit()

    def _record(self, offsets: Offsets, committed: bool) -> None:
        if committed and offsets:
            for tp, offset in offsets.items():
                self.committed[tp.partition] = offset
            self.metrics.commits.inc()

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

    def _commit(self, offsets: Offsets, timed: bool = True) -> bool:
        """The consumer's commit; a failure (broker away, rebalance) is logged and the
        same offsets are taken again at the next commit interval. `timed`: its time
        goes to the commit stage's histogram (False where the caller times it).

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
            return self._answered(exc)
        return self._answered(None, time.perf_counter() - start if timed else None)

    def _settle(self, commit: InFlight) -> None:
        """Wait for the commit in flight (a blocking commit goes after it), at most
        `SETTLE_S`: one the broker does not answer by then is left to its thread and not
        booked. Its offsets were safe when taken, and the blocking commit that follows
        takes them afresh; if it lands after that one, the group's position only moves
        back (a restart would re-read, never skip)."""
        if commit.wait(SETTLE_S):
            self._book(commit)
            return
        self._in_flight = None
        logger.warning("the offset commit in flight for %.1f s is not answered; "
                       "committing again without it", self._clock() - commit.started)

    def _book(self, commit: InFlight) -> None:
        """The commit in flight is answered: book it like a blocking one."""
        self._in_flight = None
        error = commit.error
        if error is None or isinstance(error, KafkaClientError):
            self._record(commit.offsets, self._answered(error, commit.seconds))
            return
        raise error  # a bug, not the broker: as if raised on this thread

    def _answered(self, error: KafkaClientError | None, seconds: float | None = None,
                  ) -> bool:
        """Count a commit's answer, and its `seconds` (if given) when it went through;
        True when it did."""
        if error is not None:
            self.metrics.commit_failures.inc()
            if self._failing_since is None:
                self._failing_since = self._clock()
            self._last_error = str(error)
            logger.warning("offset commit failed (%s); will commit again at the next "
                           "commit interval", error)
            return False
        self._failing_since, self._last_error = None, ""
        if seconds is not None:
            self.metrics.stage_seconds.labels("commit").observe(seconds)
        return True
