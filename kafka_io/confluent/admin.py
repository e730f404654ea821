"""confluent-kafka's `AdminClient` behind the port: topics, and the questions the ACL
check asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from streamrec.kafka_io.confluent.base import (
    METADATA_TIMEOUT_S,
    ErrorLog,
    common_config,
    connect,
    translate,
)
from streamrec.kafka_io.errors import KafkaUnavailableError
from streamrec.kafka_io.port import (
    Admin,
    TopicInfo,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)


class ConfluentAdmin(Admin):
    """confluent-kafka's `AdminClient` behind the port."""

    client = "confluent"

    def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity) -> None:
        self._errors = ErrorLog()
        self._a = AdminClient(common_config(bootstrap, client_id, security, self._errors))
        connect(self._a, bootstrap, self._errors, lambda: self._a.poll(0))

    def list_topics(self) -> set[str]:
        try:
            return set(self._a.list_topics(timeout=METADATA_TIMEOUT_S).topics)
        except KafkaException as exc:
            raise translate(exc) from exc

    def create_topic(self, name: str, partitions: int, replication_factor: int | None,
                     configs: Mapping[str, str]) -> bool:
        topic = NewTopic(name, num_partitions=partitions,
                         replication_factor=-1 if replication_factor is None
                         else replication_factor, config=dict(configs))
        try:
            self._a.create_topics([topic], operation_timeout=METADATA_TIMEOUT_S)[name].result()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            raise translate(exc, names=(name,)) from exc
        return True

    def describe_topics(self, names: list[str]) -> dict[str, TopicInfo]:
        futures = self._a.describe_topics(TopicCollection(names),
                                          include_authorized_operations=True)
        found = {}
        for name, future in futures.items():
            try:
                topic = future.result()
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                code = err.code() if isinstance(err, KafkaError) else None
                if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    found[name] = TopicInfo(name, 0, "denied")
                elif code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    found[name] = TopicInfo(name, 0, "not_found")
                else:
                    raise translate(exc, names=(name,)) from exc
                continue
            ops = topic.authorized_operations
            found[name] = TopicInfo(name, len(topic.partitions), None,
                                    frozenset(op.name for op in ops) if ops else None)
        return found

    def group_operations(self, group: str) -> frozenset[str] | None:
        future = self._a.describe_consumer_groups([group], include_authorized_operations=True)
        try:
            described = future[group].result()
        except KafkaException as exc:
            raise translate(exc, names=(group,)) from exc
        ops = described.authorized_operations
        return frozenset(op.name for op in ops) if ops else None

    def may_write_transactional_id(self, transactional_id: str) -> bool | None:
        """confluent-kafka cannot describe transactions: the producer's
        `init_transactions` reports a refusal itself."""
        return None

    def wait_for_topics(self, topics: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                known = self._a.list_topics(timeout=METADATA_TIMEOUT_S).topics
            except KafkaException as exc:
                raise translate(exc) from exc
            ready = all(t in known and known[t].error is None and known[t].partitions
                        and all(p.leader >= 0 for p in known[t].partitions.values())
                        for t in topics)
            if ready:
                return
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(f"topics {topics} not ready after {timeout_s:.0f}s")
            time.sleep(0.1)

    def close(self) -> None:
        """Nothing to release: the admin client closes when collected."""
