"""`send_many` on librdkafka: every record produced once, in order, with its own report,
also when the local queue fills up halfway or the client refuses a record; a topic the
metadata refuses is named as a refusal."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamrec.kafka_io.access import authorization_error
from streamrec.kafka_io.confluent import producer as adapter
from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import ProducerSettings
from streamrec.kafka_io.security import KafkaSecurity


class Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeCk:
    """librdkafka's producer as far as producing goes: a queue of `room` records."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.room = 1_000
        self.refuse: bytes | None = None  # produce() raises KafkaException for this value
        self.produced: list[tuple[str, bytes, bytes, int]] = []
        self.callbacks: list[Any] = []
        self.topic_error: KafkaError | None = None  # list_topics answers the topic with it

    def list_topics(self, topic: str, timeout: float) -> Any:
        partitions = {} if self.topic_error else {0: object(), 1: object()}
        found = SimpleNamespace(error=self.topic_error, partitions=partitions)
        return SimpleNamespace(topics={topic: found})

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                partition: int = -1, on_delivery: Any = None, **kwargs: Any) -> None:
        if value == self.refuse:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        if self.room == 0:
            raise BufferError("queue full")
        self.room -= 1
        self.produced.append((topic, key, value, partition))  # type: ignore[arg-type]
        self.callbacks.append(on_delivery)

    def poll(self, timeout: float = 0.0) -> int:
        """Deliver everything queued (freeing the queue)."""
        for offset, callback in enumerate(self.callbacks):
            callback(None, Msg(self.produced[offset][3], offset))
        self.room += len(self.callbacks)
        self.callbacks = []
        return 0


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> tuple[adapter.ConfluentProducer, FakeCk]:
    monkeypatch.setattr(adapter, "CkProducer", FakeCk)
    monkeypatch.setattr(adapter, "connect", lambda *a, **k: None)
    producer = adapter.ConfluentProducer(ProducerSettings(bootstrap="x:1", client_id="c"),
                                         KafkaSecurity())
    return producer, producer._p  # type: ignore[return-value]


def records(n: int) -> list[tuple[bytes, bytes, int]]:
    return [(b"k%d" % i, b"v%d" % i, i % 3) for i in range(n)]


def test_each_record_is_produced_once_in_order_and_answered(
    made: tuple[adapter.ConfluentProducer, FakeCk],
) -> None:
    producer, ck = made
    reports = producer.send_many("recs", records(5))
    assert [(k, v, p) for _, k, v, p in ck.produced] == records(5)
    assert not any(r.done for r in reports)
    producer.poll(0)
    assert [(r.done, r.partition, r.offset) for r in reports] == [
        (True, i % 3, i) for i in range(5)]


def test_a_full_queue_halfway_waits_for_room_and_loses_nothing(
    made: tuple[adapter.ConfluentProducer, FakeCk],
) -> None:
    producer, ck = made
    ck.room = 3  # the fourth record finds the queue full: poll frees it
    reports = producer.send_many("recs", records(8))
    assert len(reports) == 8
    assert [(k, v, p) for _, k, v, p in ck.produced] == records(8)
    producer.poll(0)
    assert all(r.done and r.error is None for r in reports)


def test_a_refused_record_raises_the_port_error(
    made: tuple[adapter.ConfluentProducer, FakeCk],
) -> None:
    producer, ck = made
    ck.refuse = b"v2"
    with pytest.raises(KafkaClientError):
        producer.send_many("recs", records(4))
    assert [v for _, _, v, _ in ck.produced] == [b"v0", b"v1"]


def test_a_topic_the_metadata_refuses_is_a_refusal_naming_it(
    made: tuple[adapter.ConfluentProducer, FakeCk],
) -> None:
    # Seen in CI: WRITE revoked while the worker ran came back as a topic error in the
    # metadata, and the worker stopped with a bare client error instead of the ACL.
    producer, ck = made
    assert producer.partition_count("recs") == 2
    ck.topic_error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaClientError) as raised:
        producer.partition_count("other")
    assert (raised.value.denied, raised.value.names) == ("topic", ("other",))
    refusal = authorization_error(raised.value, KafkaSecurity(), reads=["events"])
    assert refusal is not None
    assert "grant" in str(refusal)
    assert "WRITE on topic other" in str(refusal)


def test_a_topic_missing_from_the_metadata_is_no_refusal(
    made: tuple[adapter.ConfluentProducer, FakeCk],
) -> None:
    producer, ck = made
    ck.topic_error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    with pytest.raises(KafkaClientError) as raised:
        producer.partition_count("recs")
    assert raised.value.denied is None
    assert "recs" in str(raised.value)
