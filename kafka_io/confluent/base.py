"""What every confluent-kafka client shares: errors turned into the port's, partition
conversion, the common settings, and the first connection, checked with a bound.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as CkPartition

from streamrec.kafka_io.errors import (
    Denied,
    KafkaClientError,
    KafkaSecurityError,
    KafkaUnavailableError,
)
from streamrec.kafka_io.port import TopicPartition
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)


librdkafka_log = logging.getLogger("streamrec.kafka_io.librdkafka")

BOOTSTRAP_TIMEOUT_S = 30.0  # as kafka-python's bootstrap: no broker answers -> error
METADATA_TIMEOUT_S = 10.0
DENIED: dict[int, Denied] = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional_id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}
_SECURITY = (KafkaError._AUTHENTICATION, KafkaError._SSL,
             KafkaError.SASL_AUTHENTICATION_FAILED)


def translate(exc: BaseException | KafkaError, names: tuple[str, ...] = ()) -> KafkaClientError:
    """The port's error for a confluent-kafka exception or error (its cause)."""
    if isinstance(exc, KafkaClientError):
        return exc
    err = exc if isinstance(exc, KafkaError) else (
        exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None)
    if err is None:
        error = KafkaClientError(str(exc) or type(exc).__name__)
    else:
        code = err.code()
        denied = DENIED.get(code)
        if denied is None and "AUTHORIZATION" in (err.name() or ""):
            denied = "other"
        error = KafkaClientError(f"{err.name()}: {err.str()}", denied=denied,
                                 names=names if denied else (), retriable=err.retriable())
    if isinstance(exc, BaseException):
        error.__cause__ = exc
    return error


def to_ck(tp: TopicPartition, offset: int | None = None) -> CkPartition:
    if offset is None:
        return CkPartition(tp.topic, tp.partition)
    return CkPartition(tp.topic, tp.partition, offset)


def to_port(tp: CkPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class ErrorLog:
    """librdkafka's error callback: logs, and keeps the last error for diagnosis."""

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        self.last = err
        if err.fatal():
            logger.error("librdkafka fatal error: %s", err.str())
        else:
            logger.debug("librdkafka: %s", err.str())


def common_config(bootstrap: str, client_id: str, security: KafkaSecurity, errors: ErrorLog,
            ) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "client.id": client_id,
            "socket.nagle.disable": True, "error_cb": errors, "logger": librdkafka_log,
            **security.librdkafka_config()}


def connect(client: Any, bootstrap: str, errors: ErrorLog, serve: Any) -> None:
    """Ask for metadata until a broker answers: no broker -> KafkaUnavailableError,
    a failed login or handshake -> KafkaSecurityError, at once."""
    deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
    while True:
        try:
            client.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            serve()
            last = errors.last
            if last is not None and last.code() in _SECURITY:
                raise KafkaSecurityError(f"connection to {bootstrap} failed: {last.str()} — "
                                         "check --security-protocol, --ssl-cafile and the "
                                         "SASL settings") from exc
            if time.monotonic() > deadline:
                cause = f" (last error: {last.str()})" if last is not None else ""
                raise KafkaUnavailableError(
                    f"no Kafka broker answers at {bootstrap}: {exc}{cause}") from exc
