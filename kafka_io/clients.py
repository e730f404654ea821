"""Kafka clients made the same way everywhere, on the adapter chosen: consumer, producer, admin.

One place decides the settings that carry the delivery guarantees (manual commits,
committed reads only, acks=all, idempotence, retries; `port.ConsumerSettings` and
`port.ProducerSettings`) so every client the worker or a tool makes agrees, applies
the same `KafkaSecurity` to each, and checks the connection's security up front
(`probe.py`). Which library does the work is chosen once per process
(`select_client`, from `--kafka-client` or `STREAMREC_KAFKA_CLIENT`): `auto` takes
`AUTO_CLIENT`, the adapter that measured faster side by side (docs/BENCHMARKS.md)
and passes the whole suite, falling back to kafka-python when confluent-kafka is
not installed. Topic creation and the waits a new topic
needs live here too.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from typing import Any

from streamrec.common.errors import ConfigError
from streamrec.kafka_io.errors import (
    ACL_DOC,
    KafkaAuthorizationError,
    KafkaClientError,
    KafkaUnavailableError,
)
from streamrec.kafka_io.port import (
    CLIENT_CHOICES,
    Admin,
    ClientName,
    Consumer,
    ConsumerSettings,
    Producer,
    ProducerSettings,
    RebalanceCallback,
)
from streamrec.kafka_io.probe import preflight
from streamrec.kafka_io.security import KafkaSecurity, principal_of

logger = logging.getLogger(__name__)

CLIENT_ENV = "STREAMREC_KAFKA_CLIENT"
TOPIC_READY_S = 30.0  # how long a topic may take to have a leader for every partition
# What `auto` picks when it is installed: confluent-kafka passes the whole integration
# suite and measured faster side by side (docs/BENCHMARKS.md, 2026-12-02 22:07: the
# relay 4x the events/s at a quarter of the CPU, the worker 1.2x the recommendations/s).
AUTO_CLIENT: ClientName = "confluent"


def confluent_installed() -> bool:
    """Whether confluent-kafka (with its bundled librdkafka) can be imported."""
    return importlib.util.find_spec("confluent_kafka") is not None


def resolve_client(choice: str | None = None) -> ClientName:
    """The adapter for `choice` (None: `STREAMREC_KAFKA_CLIENT`, else `auto`).

    ConfigError for an unknown name, or for `confluent` when it is not installed.
    """
    choice = choice or os.environ.get(CLIENT_ENV) or "auto"
    if choice not in CLIENT_CHOICES:
        raise ConfigError(f"--kafka-client ({CLIENT_ENV}) must be one of "
                          f"{', '.join(CLIENT_CHOICES)}, got {choice!r}")
    if choice == "auto":
        choice = AUTO_CLIENT
        if choice == "confluent" and not confluent_installed():
            return "kafka-python"
    elif choice == "confluent" and not confluent_installed():
        raise ConfigError("--kafka-client confluent: confluent-kafka is not installed "
                          "(pip install confluent-kafka), or choose kafka-python")
    return choice  # type: ignore[return-value]


def select_client(choice: str | None) -> ClientName:
    """Make `choice` this process's adapter (and its children's: reader processes read
    the environment); returns the adapter it resolved to."""
    name = resolve_client(choice)
    os.environ[CLIENT_ENV] = name
    logger.debug("Kafka client: %s", name)
    return name


def make_consumer(
    bootstrap: str, group_id: str | None, client_id: str, security: KafkaSecurity | None = None,
    *, client: str | None = None, **settings: Any,
) -> Consumer:
    """A consumer with manual commits that reads committed data only; `settings` are
    `ConsumerSettings` fields (group-less consumers never create topics)."""
    if group_id is None:
        settings.setdefault("allow_auto_create_topics", False)
    config = ConsumerSettings(bootstrap, group_id, client_id, **settings)
    security = security or KafkaSecurity()
    preflight(bootstrap, security)
    if resolve_client(client) == "confluent":
        from streamrec.kafka_io.confluent.consumer import ConfluentConsumer
        return ConfluentConsumer(config, security)
    from streamrec.kafka_io.kafka_python.consumer import KafkaPythonConsumer
    return KafkaPythonConsumer(config, security)


def make_producer(
    bootstrap: str, client_id: str, security: KafkaSecurity | None = None, *,
    client: str | None = None, **settings: Any,
) -> Producer:
    """An idempotent producer that waits for all in-sync replicas; `settings` are
    `ProducerSettings` fields."""
    config = ProducerSettings(bootstrap, client_id, **settings)
    security = security or KafkaSecurity()
    preflight(bootstrap, security)
    if resolve_client(client) == "confluent":
        from streamrec.kafka_io.confluent.producer import ConfluentProducer
        return ConfluentProducer(config, security)
    from streamrec.kafka_io.kafka_python.producer import KafkaPythonProducer
    return KafkaPythonProducer(config, security)


def make_admin(
    bootstrap: str, client_id: str, security: KafkaSecurity | None = None, *,
    client: str | None = None,
) -> Admin:
    """An admin client, failing with a clear error when no broker answers."""
    security = security or KafkaSecurity()
    preflight(bootstrap, security)
    if resolve_client(client) == "confluent":
        from streamrec.kafka_io.confluent.admin import ConfluentAdmin
        return ConfluentAdmin(bootstrap, client_id, security)
    from streamrec.kafka_io.kafka_python.admin import KafkaPythonAdmin
    return KafkaPythonAdmin(bootstrap, client_id, security)


def ensure_topics(
    bootstrap: str, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None,
    client_id: str = "streamrec-admin", security: KafkaSecurity | None = None,
    replication_factor: int | None = None, client: str | None = None,
) -> list[str]:
    """Create the missing topics (name -> partitions); returns the names created.

    `replication_factor` None leaves it to the broker (`default.replication.factor`),
    so a topic on a 3-broker cluster gets the cluster's replication, not a hard-coded 1.
    """
    if replication_factor is not None and replication_factor < 1:
        raise ConfigError(f"replication factor must be >= 1, got {replication_factor}")
    admin = make_admin(bootstrap, client_id, security, client=client)
    try:
        existing = admin.list_topics()
        created = []
        for name, partitions in topics.items():
            if name in existing:
                continue
            try:
                if admin.create_topic(name, partitions, replication_factor,
                                      (configs or {}).get(name, {})):
                    created.append(name)
            except KafkaClientError as exc:
                if exc.denied in ("topic", "cluster"):
                    # An existing topic the principal may not DESCRIBE is not listed
                    # either, so "missing" may mean "invisible": say both.
                    who = principal_of(security or KafkaSecurity())
                    raise KafkaAuthorizationError(
                        f"not authorized to CREATE topic {name} (principal {who}): it does "
                        f"not exist, or {who} may not DESCRIBE it; create it and grant {who} "
                        f"access to it, or grant CREATE on the cluster to let streamrec "
                        f"create it (see {ACL_DOC})") from exc
                raise KafkaUnavailableError(f"cannot create topic {name}: {exc}") from exc
        if created:
            # Created is not ready: wait until every partition has a leader, or a
            # consumer subscribing right now would see no partitions.
            admin.wait_for_topics(created, TOPIC_READY_S)
            logger.info("created topics %s", created)
        return created
    finally:
        admin.close()


def subscribe_when_known(
    consumer: Consumer, topic: str, *, on_assigned: RebalanceCallback | None = None,
    on_revoked: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None,
    timeout_s: float = TOPIC_READY_S,
) -> None:
    """Subscribe once the consumer's own metadata knows the topic's partitions: a group
    joined before that is assigned nothing until the next metadata refresh (5 minutes
    by default), and a topic created a moment before is not always known at once.
    KafkaUnavailableError past the bound."""
    deadline = time.monotonic() + timeout_s
    while not consumer.partitions_for(topic):
        if time.monotonic() > deadline:
            raise KafkaUnavailableError(
                f"topic {topic!r} has no known partitions after {timeout_s:.0f}s")
        time.sleep(0.2)
    consumer.subscribe(topic, on_assigned=on_assigned, on_revoked=on_revoked, on_lost=on_lost)
