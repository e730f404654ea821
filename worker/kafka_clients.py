"""Kafka clients made the same way everywhere: consumer, producer, admin.

One place decides the settings that carry the delivery guarantees (manual commits,
acks=all, idempotence, retries) so every client the worker or a tool makes agrees.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from streamrec.worker.errors import KafkaUnavailableError
from streamrec.worker.security import KafkaSecurity

logger = logging.getLogger(__name__)

# Large enough for the biggest record a dead-letter copy may carry, plus headers.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


def make_consumer(
    bootstrap: str, group_id: str | None, client_id: str, security: KafkaSecurity | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A group consumer with manual commits that starts from the earliest offset."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": MAX_REQUEST_BYTES,
        "fetch_max_bytes": 4 * MAX_REQUEST_BYTES,
        "isolation_level": "read_committed",
    }
    config.update((security or KafkaSecurity()).client_kwargs())
    config.update(overrides)
    try:
        return KafkaConsumer(**config)
    except KafkaTimeoutError as exc:
        raise KafkaUnavailableError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc


def make_producer(
    bootstrap: str, client_id: str, security: KafkaSecurity | None = None, **overrides: Any,
) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "retry_backoff_ms": 100,
        "delivery_timeout_ms": 120_000,
        "linger_ms": 5,
        "max_request_size": MAX_REQUEST_BYTES,
    }
    config.update((security or KafkaSecurity()).client_kwargs())
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaTimeoutError as exc:
        raise KafkaUnavailableError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc


def make_admin(
    bootstrap: str, client_id: str, security: KafkaSecurity | None = None,
) -> KafkaAdminClient:
    """An admin client, failing with a clear error when no broker answers."""
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id,
                                **(security or KafkaSecurity()).client_kwargs())
    except KafkaTimeoutError as exc:
        raise KafkaUnavailableError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc


def ensure_topics(
    bootstrap: str, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None,
    client_id: str = "streamrec-admin", security: KafkaSecurity | None = None,
) -> list[str]:
    """Create the missing topics (name -> partitions); returns the names created."""
    admin = make_admin(bootstrap, client_id, security)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=parts, replication_factor=1,
                     topic_configs=(configs or {}).get(name, {}))
            for name, parts in topics.items() if name not in existing
        ]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another worker won the race: fine
            except KafkaError as exc:
                raise KafkaUnavailableError(f"cannot create topic {topic.name}: {exc}") from exc
        if created:
            # Created is not ready: wait until every partition has a leader, or a
            # consumer subscribing right now would see no partitions.
            try:
                admin.wait_for_topics(created, timeout_ms=30_000)
            except KafkaTimeoutError as exc:
                raise KafkaUnavailableError(f"topics {created} not ready: {exc}") from exc
            logger.info("created topics %s", created)
        return created
    finally:
        admin.close()
