"""The commit protocol against a fake consumer and a fake producer (the Kafka port's
types): the guarantees of docs/RELIABILITY.md, with the exact offsets committed.

- never past an unanswered user (an event whose recommendation is not sent yet);
- never past an unacknowledged record (sent before the offsets were taken, its
  `Delivery` not succeeded yet);
- with exactly-once the transaction carries the offsets: `send_offsets_to_transaction`
  gets exactly the offsets committed, and the consumer commits nothing itself;
- a failed delivery (or transaction) means no commit of those offsets, then or later.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import pytest

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import Consumer, DeliveryReport, Producer, TopicPartition
from streamrec.worker.commits import Commits
from streamrec.worker.errors import PublishError
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.publish import Acked, Publisher

TOPIC = "events"
CHANGELOG = "g-histories-changelog"
META = "group metadata"  # what the fake consumer hands the transaction
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def only_what_the_protocol_uses(cls: type) -> type:
    """Make every abstract method the fake leaves out fail the test if it is called."""
    for name in list(cls.__abstractmethods__):
        def unused(self: Any, *args: Any, _name: str = name, **kwargs: Any) -> Any:
            raise AssertionError(f"the commit protocol should not call {_name}")
        setattr(cls, name, unused)
    abc.update_abstractmethods(cls)
    return cls


@only_what_the_protocol_uses
class FakeConsumer(Consumer):
    """Records every commit; `refuse` makes the next commits fail as a broker would."""

    client = "kafka-python"

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.commits: list[dict[TopicPartition, int]] = []
        self.refuse = 0  # this many commits fail next

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.refuse:
            self.refuse -= 1
            raise KafkaClientError("the group is rebalancing", retriable=True)
        self.commits.append(dict(offsets))
        self.log.append("consumer commit")

    def group_metadata(self) -> Any:
        return META


@only_what_the_protocol_uses
class FakeProducer(Producer):
    """Hands out a `DeliveryReport` per send and answers it only when the test says so;
    `flush` acknowledges whatever is unanswered. Transactional calls are logged."""

    client = "kafka-python"

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.deliveries: list[DeliveryReport] = []
        self.offsets_sent: list[tuple[dict[TopicPartition, int], Any]] = []
        self.refuse_commit = False

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, *,
             partition: int | None = None, headers: Any = None) -> DeliveryReport:
        delivery = DeliveryReport()
        self.deliveries.append(delivery)
        self.log.append(f"send {len(self.deliveries) - 1}")
        return delivery

    def ack(self, *numbers: int) -> None:
        for n in numbers:
            self.deliveries[n].acknowledged(0, n)

    def fail(self, n: int) -> None:
        self.deliveries[n].failed(KafkaClientError("MessageSizeTooLargeError"))

    def poll(self, timeout_s: float = 0.0) -> None:
        pass

    def flush(self, timeout_s: float = 120.0) -> bool:
        self._answer_all()
        self.log.append("flush")
        return True

    def _answer_all(self) -> None:
        for n, delivery in enumerate(self.deliveries):
            if not delivery.done:
                delivery.acknowledged(0, n)

    def init_transactions(self, timeout_s: float) -> None:
        self.log.append("init transactions")

    def begin_transaction(self) -> None:
        self.log.append("begin")

    def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int],
                                    group_metadata: Any, timeout_s: float) -> None:
        self.offsets_sent.append((dict(offsets), group_metadata))
        self.log.append("offsets to transaction")

    def commit_transaction(self, timeout_s: float) -> None:
        if self.refuse_commit:
            raise KafkaClientError("the transaction coordinator fenced this producer")
        self._answer_all()  # a transaction's commit flushes its records first
        self.log.append("commit transaction")

    def abort_transaction(self, timeout_s: float) -> None:
        self.log.append("abort transaction")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A `Commits` over the fakes, with the pipeline's side in plain fields: users
    waiting for a batch (`waiting`) and in the model stage (`in_hand`), as partition ->
    their first offset, and what was acknowledged."""

    def __init__(self, exactly_once: bool = False,
                 consumer: type[FakeConsumer] = FakeConsumer) -> None:
        self.log: list[str] = []
        self.consumer = consumer(self.log)
        self.producer = FakeProducer(self.log)
        self.publisher = Publisher(self.producer, "recs", "events.dlq", 1024,
                                   transactional=exactly_once)
        self.metrics = WorkerMetrics()
        self.clock = FakeClock()
        self.waiting: dict[int, int] = {}
        self.in_hand: dict[int, int] = {}
        self.acked: list[Acked] = []
        self.commit_points = 0
        self.commits = Commits(
            self.consumer, self.publisher, TOPIC, interval_ms=1000, exactly_once=exactly_once,
            metrics=self.metrics, unanswered=self.unanswered,
            publish_in_hand=self.publish_in_hand, on_acked=self.acked.append,
            on_commit=self.count_commit_point, clock=self.clock)

    def unanswered(self) -> dict[int, int]:
        marks = dict(self.waiting)
        for partition, offset in self.in_hand.items():
            marks[partition] = min(offset, marks.get(partition, offset))
        return marks

    def send(self, *users: str) -> None:
        """Send one changelog record per user (any record kind is numbered alike)."""
        for user in users:
            self.publisher.send_changelog(CHANGELOG, 0, [user], [b"history"])

    def publish_in_hand(self) -> None:
        self.log.append("publish in hand")
        self.send(*(f"in hand {p}" for p in self.in_hand))
        self.in_hand = {}

    def count_commit_point(self) -> None:
        self.commit_points += 1

    def next_interval(self) -> None:
        self.clock.now += 1.0

    def failures(self, kind: str) -> float:
        return self.metrics.publish_failures.labels(kind)._value.get()

    def commit_timings(self) -> float:
        """How many times the commit stage was timed."""
        return self.metrics.registry.get_sample_value(
            "streamrec_stage_seconds_count", {"stage": "commit"}) or 0.0


def test_never_commits_past_an_unanswered_user() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    c.consumed_up_to(1, 7)
    rig.waiting = {0: 4}  # offset 4 of partition 0 waits for its batch
    c.update()  # due: the offsets are taken (nothing is in flight)
    c.update()  # ... and committed
    assert rig.consumer.commits == [{TP0: 4, TP1: 7}]
    assert c.committed == {0: 4, 1: 7}
    rig.waiting = {}  # the user is answered
    rig.next_interval()
    c.update()
    c.update()
    assert rig.consumer.commits == [{TP0: 4, TP1: 7}, {TP0: 10}]  # partition 1 did not move
    assert rig.metrics.commits._value.get() == 2


def test_never_commits_past_an_unacknowledged_record() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    rig.send("a", "b")  # records 0 and 1, sent for events below 10
    c.update()  # the offsets are taken with the next record number (2)
    assert rig.consumer.commits == []
    rig.producer.ack(1)
    c.update()
    assert rig.consumer.commits == []  # record 0 is not acknowledged
    c.consumed_up_to(0, 15)
    rig.send("c")  # record 2, after the offsets were taken
    rig.producer.ack(0)
    c.update()
    assert rig.consumer.commits == [{TP0: 10}]  # records 0 and 1 only; not 15
    rig.next_interval()
    c.update()  # takes 15, behind record 2
    c.update()
    assert rig.consumer.commits == [{TP0: 10}]
    rig.producer.ack(2)
    c.update()
    assert rig.consumer.commits == [{TP0: 10}, {TP0: 15}]
    assert [len(a.changelog) for a in rig.acked if a] == [2, 1]


def test_nothing_is_taken_before_the_commit_interval() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 3)
    c.update()
    c.update()
    c.consumed_up_to(0, 8)
    rig.clock.now += 0.75
    assert c.until_due() == pytest.approx(0.25)
    c.update()
    c.update()
    assert rig.consumer.commits == [{TP0: 3}]
    rig.clock.now += 0.25
    assert c.until_due() == 0.0
    c.update()
    assert c.until_due() == float("inf")  # taken: now they wait for acknowledgements
    c.update()
    assert rig.consumer.commits == [{TP0: 3}, {TP0: 8}]
    assert c.until_due() == float("inf")  # nothing uncommitted


def test_a_failed_delivery_commits_nothing_then_or_later() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    rig.send("a", "b")
    c.update()  # offsets 10 wait for records 0 and 1
    rig.producer.fail(0)
    rig.producer.ack(1)
    with pytest.raises(PublishError):
        c.update()
    assert rig.failures("changelog") == 1
    c.update()
    c.commit_now()
    rig.next_interval()
    c.update()
    c.update()
    assert rig.consumer.commits == []
    assert c.committed == {}
    assert "flush" not in rig.log


def test_a_delivery_failing_in_the_final_flush_commits_nothing() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    rig.send("a", "b")
    rig.producer.fail(1)
    with pytest.raises(PublishError):
        c.commit_now()  # shutdown: flush, then commit
    assert rig.consumer.commits == []
    assert rig.failures("changelog") == 1
    c.commit_now()
    assert rig.consumer.commits == []


def test_a_blocking_commit_publishes_the_batch_in_hand_and_waits_for_every_ack() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    c.consumed_up_to(1, 6)
    rig.in_hand = {0: 5}  # a user of the batch in the model stage
    rig.waiting = {1: 3}  # a user still waiting for a batch
    rig.send("a")
    c.commit_now()
    assert rig.log == ["send 0", "publish in hand", "send 1", "flush", "consumer commit"]
    assert rig.consumer.commits == [{TP0: 10, TP1: 3}]  # the batch in hand went out first
    assert rig.commit_points == 1


def test_each_commit_is_timed_once() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    c.update()  # the interval's commit: offsets taken ...
    c.update()  # ... and committed on the loop
    assert rig.commit_timings() == 1
    c.consumed_up_to(0, 12)
    rig.send("a")
    c.commit_now()  # a blocking commit (shutdown): the flush and the commit, timed as one
    assert len(rig.consumer.commits) == 2
    assert rig.commit_timings() == 2
    c.commit_now(consumer_commit=False)  # inside a rebalance callback: the flush alone
    assert rig.commit_timings() == 3


def test_a_commit_inside_a_rebalance_callback_flushes_but_leaves_the_offsets() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    rig.send("a")
    c.commit_now(consumer_commit=False)
    assert rig.log == ["send 0", "publish in hand", "flush"]
    assert rig.consumer.commits == []
    assert c.committed == {}


def test_the_transaction_carries_exactly_the_offsets_committed() -> None:
    rig = Rig(exactly_once=True)
    c = rig.commits
    c.consumed_up_to(0, 10)
    c.consumed_up_to(1, 7)
    rig.waiting = {0: 4}  # a user waits for a batch
    rig.send("a", "b")
    c.update()  # due: the transaction commits, records and offsets together
    assert rig.producer.offsets_sent == [({TP0: 4, TP1: 7}, META)]
    assert rig.log == ["init transactions", "begin", "send 0", "send 1", "publish in hand",
                       "offsets to transaction", "commit transaction", "flush"]
    assert rig.consumer.commits == []  # never the consumer's own commit
    assert c.committed == {0: 4, 1: 7}
    rig.waiting = {}
    c.consumed_up_to(0, 12)
    rig.send("c")
    c.update()
    assert rig.producer.offsets_sent == [({TP0: 4, TP1: 7}, META)]  # not due yet
    rig.next_interval()
    c.update()
    assert rig.producer.offsets_sent == [({TP0: 4, TP1: 7}, META), ({TP0: 12}, META)]
    assert c.committed == {0: 12, 1: 7}
    assert rig.consumer.commits == []


def test_a_transaction_that_does_not_commit_books_no_offsets() -> None:
    rig = Rig(exactly_once=True)
    c = rig.commits
    c.consumed_up_to(0, 10)
    rig.send("a")
    rig.producer.refuse_commit = True
    with pytest.raises(PublishError):
        c.update()
    assert rig.failures("transaction") == 1
    assert c.committed == {}
    rig.producer.refuse_commit = False
    rig.next_interval()
    c.update()
    c.commit_now()
    assert rig.producer.offsets_sent == [({TP0: 10}, META)]  # the refused one only
    assert "commit transaction" not in rig.log
    assert c.committed == {}


def test_a_lost_session_aborts_the_transaction() -> None:
    rig = Rig(exactly_once=True)
    rig.send("a")
    rig.commits.abort()
    assert rig.log[-1] == "abort transaction"
    assert rig.publisher.inflight == 0


def test_a_partition_that_moved_away_leaves_the_commit_in_waiting() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    c.consumed_up_to(1, 7)
    rig.send("a")
    c.update()  # {0: 10, 1: 7} wait for record 0
    c.forget(1)
    rig.producer.ack(0)
    c.update()
    assert rig.consumer.commits == [{TP0: 10}]
    assert c.committed == {0: 10}


def test_a_refused_consumer_commit_is_taken_again_at_the_next_interval() -> None:
    rig = Rig()
    c = rig.commits
    c.consumed_up_to(0, 10)
    rig.consumer.refuse = 2
    c.update()
    c.update()
    assert rig.consumer.commits == []
    assert rig.metrics.commit_failures._value.get() == 1
    assert c.committed == {}
    assert rig.commit_points == 1  # the cap is applied all the same
    failed_at = rig.clock.now
    assert c.failing_since == failed_at  # what the watchdog times (worker/watchdog.py)
    assert "rebalancing" in c.last_error
    c.update()
    assert rig.consumer.commits == []  # not before the interval
    rig.next_interval()
    c.update()
    c.update()
    assert c.failing_since == failed_at  # failing since the first failure
    rig.next_interval()
    c.update()
    c.update()
    assert rig.consumer.commits == [{TP0: 10}]
    assert c.committed == {0: 10}
    assert c.failing_since is None

