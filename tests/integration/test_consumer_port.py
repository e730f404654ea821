"""The consumer port's pause state, the same with both adapters.

librdkafka keeps a partition's pause flag across an unassign and a later assign; the
port promises that a freshly assigned partition is fetched and that a seek leaves a
paused partition paused.
"""

from __future__ import annotations

import time

import pytest

from streamrec.kafka_io.clients import make_consumer, make_producer
from streamrec.kafka_io.port import Consumer, TopicPartition
from tests.conftest import NewTopicFactory

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
