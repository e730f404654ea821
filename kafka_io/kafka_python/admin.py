"""`KafkaAdminClient` behind the port: topics, and the questions the ACL check asks.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from streamrec.kafka_io.errors import KafkaUnavailableError
from streamrec.kafka_io.kafka_python.base import open_client, translate, translated
from streamrec.kafka_io.port import (
    Admin,
    TopicInfo,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)


class KafkaPythonAdmin(Admin):
    """`KafkaAdminClient` behind the port."""

    client = "kafka-python"

    def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity) -> None:
        self._a = open_client(bootstrap, security, lambda: KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id=client_id, **security.client_kwargs()))

    def list_topics(self) -> set[str]:
        with translated():
            return set(self._a.list_topics())

    def create_topic(self, name: str, partitions: int, replication_factor: int | None,
                     configs: Mapping[str, str]) -> bool:
        topic = NewTopic(name, num_partitions=partitions,
                         replication_factor=-1 if replication_factor is None
                         else replication_factor, topic_configs=dict(configs))
        try:
            self._a.create_topics([topic])
        except TopicAlreadyExistsError:
            return False
        except KafkaError as exc:
            raise translate(exc) from exc
        return True

    def describe_topics(self, names: list[str]) -> dict[str, TopicInfo]:
        with translated():
            described = self._a.describe_topics(names)
        found = {}
        for topic in described:
            code = topic.get("error_code")
            granted = topic.get("authorized_operations")
            error = (None if code == 0 else
                     "denied" if code == TopicAuthorizationFailedError.errno else "not_found")
            found[topic["name"]] = TopicInfo(
                topic["name"], len(topic.get("partitions") or ()), error,
                frozenset(granted) if isinstance(granted, list) and granted else None)
        return found

    def group_operations(self, group: str) -> frozenset[str] | None:
        with translated():
            described = self._a.describe_groups([group], include_authorized_operations=True)
        granted = described.get(group, {}).get("authorized_operations")
        return frozenset(granted) if isinstance(granted, list) and granted else None

    def may_write_transactional_id(self, transactional_id: str) -> bool | None:
        try:
            self._a.describe_transactions([transactional_id])
        except TransactionalIdAuthorizationFailedError:
            return False
        except KafkaError as exc:  # e.g. no coordinator yet: the producer will tell
            logger.debug("access check of transactional id %s: %s", transactional_id, exc)
            return None
        return True

    def wait_for_topics(self, topics: list[str], timeout_s: float) -> None:
        try:
            self._a.wait_for_topics(topics, timeout_ms=int(timeout_s * 1000))
        except KafkaTimeoutError as exc:
            raise KafkaUnavailableError(f"topics {topics} not ready: {exc}") from exc

    def close(self) -> None:
        self._a.close()
