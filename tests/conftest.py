"""Shared fixtures: one real Kafka broker per test run, an admin client, fresh topics.

`kafka_bootstrap` uses the cluster in `KAFKA_BOOTSTRAP` when set; otherwise it
starts `LocalBroker` on two free ports with its data under the session's temp dir
and stops it when the run ends, pass or fail. No Kafka mocks: integration tests
(`@pytest.mark.integration`) talk to a real broker.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.kafka_io.local.config import BrokerConfig

logger = logging.getLogger(__name__)

BROKER_START_TIMEOUT_S = 180.0  # generous: the machine may be busy training
TOPIC_READY_TIMEOUT_MS = 60_000


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of a real Kafka broker for the whole test run."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    broker = LocalBroker(BrokerConfig(
        port=port, controller_port=controller_port,
        data_dir=tmp_path_factory.mktemp("kafka")))
    try:
        yield broker.start(timeout_s=BROKER_START_TIMEOUT_S)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """An admin client on the test broker, shared by the run."""
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="streamrec-tests")
    try:
        yield client
    finally:
        client.close()


NewTopicFactory = Callable[..., str]


@pytest.fixture
def new_topic(admin: KafkaAdminClient) -> Iterator[NewTopicFactory]:
    """`new_topic(partitions=1, configs=None, prefix="t") -> name`: a fresh, ready topic.

    The name is unique per call; the call returns once every partition has a
    leader. The topics are deleted after the test.
    """
    created: list[str] = []

    def make(partitions: int = 1, configs: dict[str, str] | None = None,
             prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
        created.append(name)
        admin.wait_for_topics([name], timeout_ms=TOPIC_READY_TIMEOUT_MS)
        return name

    yield make
    if created:
        try:
            admin.delete_topics(created)
        except KafkaError as exc:  # cleanup only: a leftover topic fails no test
            logger.warning("could not delete test topics %s: %s", created, exc)
