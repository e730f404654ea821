"""`KafkaProducer` behind the port: a `Delivery` read off each send's future.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.kafka_python.base import open_client, to_kp, translate, translated
from streamrec.kafka_io.port import (
    MAX_REQUEST_BYTES,
    Producer,
    ProducerSettings,
    TopicPartition,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)


class _FutureDelivery:
    """A `Delivery` read off kafka-python's future (no callback to register per send)."""

    __slots__ = ("_error", "_future")

    def __init__(self, future: Any) -> None:
        self._future = future
        self._error: KafkaClientError | None = None

    @property
    def done(self) -> bool:
        return bool(self._future.is_done)

    @property
    def error(self) -> BaseException | None:
        if self._error is None and self._future.is_done and self._future.failed():
            self._error = translate(self._future.exception)
        return self._error

    @property
    def partition(self) -> int:
        return int(self._future.value.partition)

    @property
    def offset(self) -> int:
        return int(self._future.value.offset)


class KafkaPythonProducer(Producer):
    """`KafkaProducer` behind the port."""

    client = "kafka-python"

    def __init__(self, settings: ProducerSettings, security: KafkaSecurity) -> None:
        config: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap,
            "client_id": settings.client_id,
            "acks": "all",
            "enable_idempotence": True,
            "retries": 2**31 - 1,
            "retry_backoff_ms": 100,
            "delivery_timeout_ms": settings.record_timeout_ms,
            "linger_ms": settings.linger_ms,
            # Large batches: kafka-python builds records in Python, and a new batch
            # costs a wake-up of its sender thread.
            "batch_size": settings.batch_bytes,
            "max_request_size": MAX_REQUEST_BYTES,
            **security.client_kwargs(),
        }
        if settings.transactional_id is not None:
            config["transactional_id"] = settings.transactional_id
            config["transaction_timeout_ms"] = settings.transaction_timeout_ms
        self._p = open_client(settings.bootstrap, security, lambda: KafkaProducer(**config))

    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, *,
        partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
    ) -> _FutureDelivery:
        with translated():
            return _FutureDelivery(self._p.send(topic, value=value, key=key, partition=partition,
                                                headers=headers))

    def poll(self, timeout_s: float = 0.0) -> None:
        """Nothing to serve: kafka-python completes its futures on its own thread."""

    def flush(self, timeout_s: float = 120.0) -> bool:
        try:
            self._p.flush(timeout=timeout_s)
        except KafkaTimeoutError:
            return False
        return True

    def partition_count(self, topic: str) -> int:
        with translated():
            return len(self._p.partitions_for(topic))

    def init_transactions(self, timeout_s: float) -> None:
        with translated():
            self._p.init_transactions()

    def begin_transaction(self) -> None:
        with translated():
            self._p.begin_transaction()

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float,
    ) -> None:
        with translated():
            self._p.send_offsets_to_transaction(
                {to_kp(tp): OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()},
                group_metadata)

    def commit_transaction(self, timeout_s: float) -> None:
        with translated():
            self._p.commit_transaction()

    def abort_transaction(self, timeout_s: float) -> None:
        with translated():
            self._p.abort_transaction()

    def rates(self) -> dict[str, float]:
        group = self._p.metrics().get("producer-metrics", {})
        return {name: float(group.get(name, 0.0) or 0.0)
                for name in ("record-retry-rate", "record-error-rate")}

    def close(self, timeout_s: float = 30.0) -> None:
        self._p.close(timeout=timeout_s)
