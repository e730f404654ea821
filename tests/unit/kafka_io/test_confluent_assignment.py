"""A group member's partitions start at the committed offsets the adapter reads itself,
retrying a coordinator that moved (librdkafka#5586 leaves them unfetched for good)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CkPartition

from streamrec.kafka_io.confluent import consumer as adapter
from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import ConsumerSettings, TopicPartition
from streamrec.kafka_io.security import KafkaSecurity


class FakeCk:
    """librdkafka's consumer as far as an assignment goes."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.refusals: list[KafkaError] = []  # raised by the next committed() calls
        self.committed_offsets = {("events", 0): 41, ("events", 1): OFFSET_INVALID}
        self.assigned: list[list[tuple[str, int, int]]] = []
        self.on_assign: Any = None
        self.calls: list[str] = []

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign = on_assign

    def resume(self, partitions: list[CkPartition]) -> None:
        pass

    def committed(self, partitions: list[CkPartition], timeout: float) -> list[CkPartition]:
        self.calls.append("committed")
        if self.refusals:
            raise KafkaException(self.refusals.pop(0))
        return [CkPartition(tp.topic, tp.partition, self.committed_offsets[tp.topic, tp.partition])
                for tp in partitions]

    def assign(self, partitions: list[CkPartition]) -> None:
        self.calls.append("assign")
        self.assigned.append([(tp.topic, tp.partition, tp.offset) for tp in partitions])


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> tuple[adapter.ConfluentConsumer, FakeCk]:
    monkeypatch.setattr(adapter, "CkConsumer", FakeCk)
    monkeypatch.setattr(adapter, "connect", lambda *a, **k: None)
    monkeypatch.setattr(adapter, "COMMITTED_RETRY_S", 0.0)
    settings = ConsumerSettings(bootstrap="x:1", group_id="g", client_id="c")
    consumer = adapter.ConfluentConsumer(settings, KafkaSecurity())
    return consumer, consumer._c  # type: ignore[return-value]


def test_assigned_partitions_start_at_the_committed_offsets_read_again_until_answered(
    made: tuple[adapter.ConfluentConsumer, FakeCk],
) -> None:
    consumer, ck = made
    told: list[list[TopicPartition]] = []
    consumer.subscribe("events", on_assigned=told.append)
    ck.refusals = [KafkaError(KafkaError.NOT_COORDINATOR), KafkaError(KafkaError._TIMED_OUT)]
    ck.on_assign(ck, [CkPartition("events", 0), CkPartition("events", 1)])
    # read three times (two refusals), then assigned at the offsets, before the callback
    assert ck.calls == ["committed", "committed", "committed", "assign"]
    assert ck.assigned == [[("events", 0, 41), ("events", 1, OFFSET_BEGINNING)]]
    assert told == [[TopicPartition("events", 0), TopicPartition("events", 1)]]


def test_a_refusal_that_retrying_cannot_cure_is_raised(
    made: tuple[adapter.ConfluentConsumer, FakeCk],
) -> None:
    consumer, ck = made
    consumer.subscribe("events")
    ck.refusals = [KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)]
    with pytest.raises(KafkaClientError):
        ck.on_assign(ck, [CkPartition("events", 0)])
    assert ck.assigned == []
