"""A rebalance callback longer than the session keeps the group, with both adapters.

The worker restores a newly assigned partition inside the assignment callback; a
large changelog takes longer than the session timeout to read. kafka-python 3 runs
a plain listener on its IO loop, where it stops the heartbeats: the session
expired, the partitions were lost and assigned again, and the next restore expired
again, for good (docs/BENCHMARKS.md, the 06:01 kafka-python soak). The port's
callbacks must not hold up the heartbeats with either client.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from streamrec.kafka_io.clients import make_consumer
from streamrec.kafka_io.port import TopicPartition
from tests.conftest import NewTopicFactory

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

SESSION_MS = 6_000  # the broker's least (group.min.session.timeout.ms)
CALLBACK_S = 10.0  # longer than the session: its heartbeats must go on meanwhile


def test_an_assignment_callback_longer_than_the_session_keeps_the_partitions(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=2)
    calls: list[str] = []  # the callbacks given partitions (kafka-python revokes none first)

    def assigned(partitions: list[TopicPartition]) -> None:
        if partitions:  # kafka-python's first join may assign none (no metadata yet)
            calls.append("assigned")
            if calls.count("assigned") == 1:
                time.sleep(CALLBACK_S)  # a restore of a large changelog

    def recorder(name: str) -> Callable[[list[TopicPartition]], None]:
        return lambda partitions: calls.extend([name] if partitions else [])

    consumer = make_consumer(kafka_bootstrap, f"{topic}-group", "slow-callback-test",
                             session_timeout_ms=SESSION_MS, heartbeat_interval_ms=1_000)
    try:
        consumer.subscribe(topic, on_assigned=assigned,
                           on_revoked=recorder("revoked"), on_lost=recorder("lost"))
        deadline = time.monotonic() + 30
        while "assigned" not in calls and time.monotonic() < deadline:
            consumer.poll(0.2)
        # After the callback, polls long enough for an expired session to show.
        until = time.monotonic() + SESSION_MS / 1000 + 3
        while time.monotonic() < until:
            consumer.poll(0.2)
        assert calls == ["assigned"]
        assert consumer.assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
    finally:
        consumer.close()
