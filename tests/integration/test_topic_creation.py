"""Topics streamrec creates take the broker's replication factor unless told otherwise."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient

from streamrec.kafka_io.clients import ensure_topics
from streamrec.kafka_io.errors import KafkaUnavailableError

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]


def replicas(admin: KafkaAdminClient, topic: str) -> set[int]:
    """The replica counts of a topic's partitions."""
    return {len(p["replica_nodes"]) for p in admin.describe_topics([topic])[0]["partitions"]}


def test_the_broker_default_applies_when_no_factor_is_given(
    kafka_bootstrap: str, admin: KafkaAdminClient,
) -> None:
    topic = f"rf-default-{uuid.uuid4().hex[:8]}"
    try:
        assert ensure_topics(kafka_bootstrap, {topic: 2}) == [topic]
        assert replicas(admin, topic) == {1}  # the test broker's default.replication.factor
    finally:
        admin.delete_topics([topic])


def test_a_factor_the_cluster_cannot_meet_is_refused_with_the_reason(
    kafka_bootstrap: str, admin: KafkaAdminClient,
) -> None:
    topic = f"rf-three-{uuid.uuid4().hex[:8]}"
    reason = rf"cannot create topic {topic}: .*[Rr]eplication"
    with pytest.raises(KafkaUnavailableError, match=reason):
        ensure_topics(kafka_bootstrap, {topic: 1}, replication_factor=3)
    assert topic not in admin.list_topics()
