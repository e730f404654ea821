"""kafka-python behind the Kafka port (`port.py`): the pure-Python adapter.

kafka-python builds and parses records in Python and runs its network I/O on a
thread of its own, so it holds the GIL for much of what it does; users asked to
keep it, and it needs no native library. Its records already carry the port's
attributes and its topic partitions are tuples equal to the port's, so consumed
records pass through as they are. A bootstrap that times out is reported with the
last connection failure kafka-python logged (it otherwise says only "Unable to
bootstrap"); every error it raises leaves here as a `KafkaClientError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpPartition
from kafka.admin import NewTopic
from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from kafka.structs import OffsetAndMetadata

from streamrec.kafka_io.errors import (
    Denied,
    KafkaClientError,
    KafkaSecurityError,
    KafkaUnavailableError,
)
from streamrec.kafka_io.port import (
    MAX_REQUEST_BYTES,
    OFFSET_BEGINNING,
    OFFSET_END,
    Admin,
    Consumer,
    ConsumerSettings,
    Producer,
    ProducerSettings,
    RebalanceCallback,
    Record,
    TopicInfo,
    TopicPartition,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)

T = TypeVar("T")
AUTH_ERRORS = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError,
               IllegalSaslStateError)
_DENIED: tuple[tuple[type[AuthorizationError], Denied], ...] = (
    (TopicAuthorizationFailedError, "topic"), (GroupAuthorizationFailedError, "group"),
    (TransactionalIdAuthorizationFailedError, "transactional_id"),
    (ClusterAuthorizationFailedError, "cluster"))


def translate(exc: BaseException) -> KafkaClientError:
    """The port's error for a kafka-python exception (which becomes its cause)."""
    if isinstance(exc, KafkaClientError):
        return exc
    denied: Denied | None = None
    names: tuple[str, ...] = ()
    if isinstance(exc, AuthorizationError):
        denied = next((kind for cls, kind in _DENIED if isinstance(exc, cls)), "other")
        names = _names(exc)
    text = str(exc) or type(exc).__name__
    if denied is not None and exc.args and exc.args[0]:
        text = str(exc.args[0])  # the broker's words, without kafka-python's error prefix
    error = KafkaClientError(text, denied=denied, names=names,
                             retriable=bool(getattr(exc, "retriable", False)))
    error.__cause__ = exc
    return error


def _names(exc: BaseException) -> tuple[str, ...]:
    """The resource names kafka-python puts in an error: a set, or one bare name."""
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, set | frozenset | list | tuple):
        return tuple(sorted(str(t) for t in arg))
    if isinstance(arg, str) and arg and not any(c.isspace() for c in arg):
        return (arg,)
    return ()


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except KafkaError as exc:
        raise translate(exc) from exc


def _kp(tp: TopicPartition) -> KpPartition:
    return KpPartition(tp.topic, tp.partition)


def _port(tp: KpPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class _Listener(ConsumerRebalanceListener):
    """kafka-python's rebalance listener calling the port's callbacks."""

    def __init__(self, assigned: RebalanceCallback | None, revoked: RebalanceCallback | None,
                 lost: RebalanceCallback | None) -> None:
        self.assigned, self.revoked, self.lost = assigned, revoked, lost

    def on_partitions_revoked(self, revoked: list[KpPartition]) -> None:
        if self.revoked is not None:
            self.revoked([_port(tp) for tp in revoked])

    def on_partitions_assigned(self, assigned: list[KpPartition]) -> None:
        if self.assigned is not None:
            self.assigned([_port(tp) for tp in assigned])

    def on_partitions_lost(self, lost: list[KpPartition]) -> None:
        if self.lost is not None:
            self.lost([_port(tp) for tp in lost])
        elif self.revoked is not None:
            self.revoked([_port(tp) for tp in lost])


class KafkaPythonConsumer(Consumer):
    """`KafkaConsumer` behind the port."""

    client = "kafka-python"

    def __init__(self, settings: ConsumerSettings, security: KafkaSecurity) -> None:
        config: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap,
            "group_id": settings.group_id,
            "client_id": settings.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": settings.auto_offset_reset,
            "max_partition_fetch_bytes": settings.max_partition_fetch_bytes,
            "fetch_max_bytes": max(4 * MAX_REQUEST_BYTES, settings.max_partition_fetch_bytes),
            "fetch_max_wait_ms": settings.fetch_max_wait_ms,
            "isolation_level": "read_committed",
            "max_poll_records": settings.max_poll_records,
            "session_timeout_ms": settings.session_timeout_ms,
            "heartbeat_interval_ms": settings.heartbeat_interval_ms,
            "allow_auto_create_topics": settings.allow_auto_create_topics,
            **security.client_kwargs(),
        }
        self._c = open_client(settings.bootstrap, security, lambda: KafkaConsumer(**config))

    def subscribe(
        self, topic: str, *, on_assigned: RebalanceCallback | None = None,
        on_revoked: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None,
    ) -> None:
        with _translated():
            self._c.subscribe([topic], listener=_Listener(on_assigned, on_revoked, on_lost))

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Record]]:
        with _translated():
            # Its partitions are tuples equal to the port's, its records have the
            # port's attributes: handed out as they are, no copy per record.
            return self._c.poll(timeout_ms=max(0, int(timeout_s * 1000)))  # type: ignore[no-any-return]

    def assignment(self) -> set[TopicPartition]:
        return {_port(tp) for tp in self._c.assignment()}

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.pause(*(_kp(tp) for tp in partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.resume(*(_kp(tp) for tp in partitions))

    def paused(self) -> set[TopicPartition]:
        return {_port(tp) for tp in self._c.paused()}

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        with _translated():
            self._c.commit({_kp(tp): OffsetAndMetadata(offset, "", -1)
                            for tp, offset in offsets.items()})

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._c.highwater(_kp(partition))  # type: ignore[no-any-return]

    def group_metadata(self) -> Any:
        return self._c.group_metadata()

    def partitions_for(self, topic: str) -> set[int] | None:
        with _translated():
            return self._c.partitions_for_topic(topic)  # type: ignore[no-any-return]

    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        with _translated():
            self._c.assign([_kp(tp) for tp in offsets])
            for tp, offset in offsets.items():
                self.seek(tp, offset)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        tp = _kp(partition)
        if offset == OFFSET_BEGINNING:
            self._c.seek_to_beginning(tp)
        elif offset == OFFSET_END:
            self._c.seek_to_end(tp)
        else:
            self._c.seek(tp, offset)

    def position(self, partition: TopicPartition, timeout_s: float) -> int | None:
        with _translated():
            return self._c.position(_kp(partition),  # type: ignore[no-any-return]
                                    timeout_ms=max(1, int(timeout_s * 1000)))

    def watermarks(self, partitions: Iterable[TopicPartition], timeout_s: float,
                   ) -> dict[TopicPartition, tuple[int, int]]:
        tps = [_kp(tp) for tp in partitions]
        with _translated():
            begins = self._c.beginning_offsets(tps, timeout_ms=int(timeout_s * 1000))
            ends = self._c.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
        return {_port(tp): (begins[tp], ends[tp]) for tp in tps}

    def offsets_for_times(self, times: Mapping[TopicPartition, int], timeout_s: float,
                          ) -> dict[TopicPartition, int | None]:
        with _translated():
            found = self._c.offsets_for_times({_kp(tp): ms for tp, ms in times.items()},
                                              timeout_ms=int(timeout_s * 1000))
        return {_port(tp): (at.offset if at is not None else None) for tp, at in found.items()}

    def close(self) -> None:
        self._c.close(autocommit=False)


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
            "delivery_timeout_ms": settings.delivery_timeout_ms,
            "linger_ms": settings.linger_ms,
            # Large batches: kafka-python builds records in Python, and a new batch
            # costs a wake-up of its sender thread.
            "batch_size": settings.batch_bytes,
            "max_request_size": MAX_REQUEST_BYTES,
            **security.client_kwargs(),
        }
        if settings.transactional_id is not None:
            config["transactional_id"] = settings.transactional_id
        self._p = open_client(settings.bootstrap, security, lambda: KafkaProducer(**config))

    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, *,
        partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
    ) -> _FutureDelivery:
        with _translated():
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
        with _translated():
            return len(self._p.partitions_for(topic))

    def init_transactions(self, timeout_s: float) -> None:
        with _translated():
            self._p.init_transactions()

    def begin_transaction(self) -> None:
        with _translated():
            self._p.begin_transaction()

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float,
    ) -> None:
        with _translated():
            self._p.send_offsets_to_transaction(
                {_kp(tp): OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()},
                group_metadata)

    def commit_transaction(self, timeout_s: float) -> None:
        with _translated():
            self._p.commit_transaction()

    def abort_transaction(self, timeout_s: float) -> None:
        with _translated():
            self._p.abort_transaction()

    def rates(self) -> dict[str, float]:
        group = self._p.metrics().get("producer-metrics", {})
        return {name: float(group.get(name, 0.0) or 0.0)
                for name in ("record-retry-rate", "record-error-rate")}

    def close(self, timeout_s: float = 30.0) -> None:
        self._p.close(timeout=timeout_s)


class KafkaPythonAdmin(Admin):
    """`KafkaAdminClient` behind the port."""

    client = "kafka-python"

    def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity) -> None:
        self._a = open_client(bootstrap, security, lambda: KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id=client_id, **security.client_kwargs()))

    def list_topics(self) -> set[str]:
        with _translated():
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
        with _translated():
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
        with _translated():
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


# -- bootstrap diagnosis ------------------------------------------------------------


def open_client(bootstrap: str, security: KafkaSecurity, build: Callable[[], T]) -> T:
    """`build()` a kafka-python client; a bootstrap timeout becomes a
    KafkaSecurityError/KafkaUnavailableError naming the last failure it logged."""
    with _bootstrap_failures() as failures:
        try:
            return build()
        except KafkaTimeoutError as exc:
            raise _diagnose(bootstrap, security, exc, failures) from exc
        except KafkaError as exc:
            raise translate(exc) from exc


class _FailureLog(logging.Handler):
    """Keeps the last connection failure kafka-python logs while it bootstraps."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: BaseException | None = None
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        # The final "Unable to bootstrap" timeout is logged too: it is no cause.
        errors = [a for a in args
                  if isinstance(a, BaseException) and not isinstance(a, KafkaTimeoutError)]
        if errors:
            self.last, self.text = errors[-1], str(errors[-1])
        elif record.getMessage().startswith("Bootstrap attempt"):
            self.text = record.getMessage()


@contextlib.contextmanager
def _bootstrap_failures() -> Iterator[_FailureLog]:
    """Listen to kafka-python's connection manager for the duration of a bootstrap."""
    handler = _FailureLog()
    source = logging.getLogger("kafka.net.manager")
    source.addHandler(handler)
    try:
        yield handler
    finally:
        source.removeHandler(handler)


def _diagnose(
    bootstrap: str, security: KafkaSecurity, exc: KafkaTimeoutError, failures: _FailureLog,
) -> KafkaUnavailableError:
    """The error for a bootstrap timeout, from the last failure kafka-python logged."""
    last, text = failures.last, failures.text
    if isinstance(last, AUTH_ERRORS):
        return KafkaSecurityError(
            f"authentication to {bootstrap} failed: {text} — check --sasl-mechanism "
            f"({security.sasl_mechanism or 'PLAIN'}), --sasl-username and --sasl-password")
    if text and "Handshake failed" in text:
        return KafkaSecurityError(
            f"TLS handshake with {bootstrap} failed: {text} — check --security-protocol "
            f"({security.protocol}) and --ssl-cafile")
    cause = f" (last error: {text})" if text else ""
    return KafkaUnavailableError(f"no Kafka broker answers at {bootstrap}: {exc}{cause}")
