"""The consumer port's pause state and asynchronous commits, the same with both adapters.

librdkafka keeps a partition's pause flag across an unassign and a later assign; the
port promises that a freshly assigned partition is fetched and that a seek leaves a
paused partition paused. An asynchronous commit is answered inside a later `poll`,
in the order sent, once each (a synchronous commit between them answers no callback).
"""

from __future__ import annotations

import time

import pytest

from streamrec.kafka_io.clients import make_consumer, make_producer
from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import Consumer, TopicPartition
from tests.conftest import NewTopicFactory
from tests.integration.helpers import committed_offsets

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]


def _records(consumer: Consumer, tp: TopicPartition, wait_s: float) -> list[int]:
    """Offsets polled from `tp` within `wait_s` (returns at the first batch)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        records = consumer.poll(0.1).get(tp, [])
        if records:
            return [r.offset for r in records]
    return []


def test_pause_survives_a_seek_and_not_a_new_assignment(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=2)
    producer = make_producer(kafka_bootstrap, "consumer-port-test")
    for i in range(20):
        producer.send(topic, key=b"k", value=b"v", partition=i % 2)
    producer.flush()
    producer.close()
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = make_consumer(kafka_bootstrap, None, "consumer-port-test")
    try:
        consumer.assign({first: 0})
        assert _records(consumer, first, 10)[0] == 0
        consumer.pause([first])
        consumer.seek(first, 3)
        assert consumer.paused() == {first}
        assert _records(consumer, first, 1.0) == []  # still paused after the seek
        consumer.resume([first])
        assert _records(consumer, first, 10)[0] == 3

        consumer.pause([first])
        consumer.assign({second: 0})  # the paused partition leaves the assignment...
        assert _records(consumer, second, 10)[0] == 0
        consumer.assign({first: 5})  # ...and comes back unpaused
        assert consumer.paused() == set()
        assert _records(consumer, first, 10)[0] == 5
    finally:
        consumer.close()


def test_async_commits_are_answered_in_poll_in_order(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    beyond = TopicPartition(topic, 7)  # no such partition: the broker refuses it
    answers: list[tuple[str, KafkaClientError | None]] = []
    consumer = make_consumer(kafka_bootstrap, group, "consumer-port-test")
    try:
        consumer.assign({first: 0, second: 0})
        consumer.commit({first: 1})  # waits until the group's coordinator is known
        consumer.commit_async({first: 5}, lambda error: answers.append(("a", error)))
        consumer.commit_async({first: 8, second: 3},
                              lambda error: answers.append(("b", error)))
        consumer.commit({first: 9})  # answers neither callback
        consumer.commit_async({beyond: 1}, lambda error: answers.append(("c", error)))
        deadline = time.monotonic() + 30
        while len(answers) < 3 and time.monotonic() < deadline:
            consumer.poll(0.1)
        consumer.poll(0.5)  # nothing more comes
    finally:
        consumer.close()
    assert [name for name, _ in answers] == ["a", "b", "c"]
    assert answers[0][1] is None
    assert answers[1][1] is None
    assert isinstance(answers[2][1], KafkaClientError)
    # Committed in the order sent: the synchronous 9 came after b's 8.
    assert committed_offsets(kafka_bootstrap, group, topic) == {0: 9, 1: 3}
