"""confluent-kafka (librdkafka) behind the Kafka port (`port.py`): the fast adapter.

librdkafka batches, compresses and does its network I/O on C threads outside the
GIL, so the worker's loop spends its Python time on its own work. Its habits are
kept, not worked around:
- delivery reports (and error and statistics callbacks) fire only inside
  `poll`/`flush`, so `Producer.poll` is what the worker's loop calls to see them;
- a poll waits only until the first record (librdkafka's batch `consume` would hold
  records for its whole timeout), then takes whatever else is ready;
- rebalance callbacks run inside `poll`; the eager `range` assignor hands each
  callback the whole assignment, as kafka-python does, and the assignment is made
  when the callback returns;
- keys are partitioned with `murmur2_random`, the Java client's (and kafka-python's)
  partitioner, so a user's events land in the same partition whichever client wrote
  them (librdkafka's own default hashes with CRC32);
- `socket.nagle.disable`: records go out when the batch is due, not 40 ms later;
- a consumer outside any group reports the end of a partition (`enable.partition.eof`),
  which is how a read to the end knows it is done past transaction markers.
A client that reaches no broker at construction raises `KafkaUnavailableError`
naming the last error librdkafka reported, and every other failure leaves here as a
`KafkaClientError`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer as CkConsumer
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka import Producer as CkProducer
from confluent_kafka import TopicPartition as CkPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamrec.kafka_io.errors import (
    Denied,
    KafkaClientError,
    KafkaSecurityError,
    KafkaUnavailableError,
)
from streamrec.kafka_io.port import (
    MAX_REQUEST_BYTES,
    Admin,
    ConsumedRecord,
    Consumer,
    ConsumerSettings,
    DeliveryReport,
    Producer,
    ProducerSettings,
    RebalanceCallback,
    Record,
    TopicInfo,
    TopicPartition,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)
librdkafka_log = logging.getLogger("streamrec.kafka_io.librdkafka")

BOOTSTRAP_TIMEOUT_S = 30.0  # as kafka-python's bootstrap: no broker answers -> error
METADATA_TIMEOUT_S = 10.0
PARTITION_COUNT_TTL_S = 30.0  # a topic's partition count is looked up again after this
STATS_INTERVAL_MS = 10_000  # librdkafka statistics (retry and error rates)
_DENIED: dict[int, Denied] = {
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
        denied = _DENIED.get(code)
        if denied is None and "AUTHORIZATION" in (err.name() or ""):
            denied = "other"
        error = KafkaClientError(f"{err.name()}: {err.str()}", denied=denied,
                                 names=names if denied else (), retriable=err.retriable())
    if isinstance(exc, BaseException):
        error.__cause__ = exc
    return error


def _ck(tp: TopicPartition, offset: int | None = None) -> CkPartition:
    if offset is None:
        return CkPartition(tp.topic, tp.partition)
    return CkPartition(tp.topic, tp.partition, offset)


def _port(tp: CkPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class _Errors:
    """librdkafka's error callback: logs, and keeps the last error for diagnosis."""

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        self.last = err
        if err.fatal():
            logger.error("librdkafka fatal error: %s", err.str())
        else:
            logger.debug("librdkafka: %s", err.str())


def _common(bootstrap: str, client_id: str, security: KafkaSecurity, errors: _Errors,
            ) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "client.id": client_id,
            "socket.nagle.disable": True, "error_cb": errors, "logger": librdkafka_log,
            **security.librdkafka_config()}


def _connect(client: Any, bootstrap: str, errors: _Errors, serve: Any) -> None:
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


class ConfluentConsumer(Consumer):
    """confluent-kafka's `Consumer` behind the port."""

    client = "confluent"

    def __init__(self, settings: ConsumerSettings, security: KafkaSecurity) -> None:
        self._errors = _Errors()
        config = {
            **_common(settings.bootstrap, settings.client_id, security, self._errors),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": settings.auto_offset_reset,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
            "max.partition.fetch.bytes": settings.max_partition_fetch_bytes,
            "fetch.max.bytes": 4 * MAX_REQUEST_BYTES,
            "receive.message.max.bytes": 4 * MAX_REQUEST_BYTES + 65536,
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": settings.heartbeat_interval_ms,
            "allow.auto.create.topics": settings.allow_auto_create_topics,
            "partition.assignment.strategy": "range",
            "enable.partition.eof": settings.group_id is None,
        }
        if settings.group_id is not None:
            config["group.id"] = settings.group_id
        else:  # librdkafka wants one; nothing is ever joined or committed with it
            config["group.id"] = f"{settings.client_id}-no-group"
        self._c = CkConsumer(config)
        self._max_records = settings.max_poll_records
        self._paused: set[TopicPartition] = set()
        self._eof: dict[TopicPartition, int] = {}
        try:
            _connect(self._c, settings.bootstrap, self._errors, lambda: self._c.poll(0))
        except BaseException:
            self._c.close()
            raise

    def subscribe(
        self, topic: str, *, on_assigned: RebalanceCallback | None = None,
        on_revoked: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None,
    ) -> None:
        def assigned(_: Any, partitions: list[CkPartition]) -> None:
            self._paused.clear()  # a new assignment starts unpaused
            if on_assigned is not None:
                on_assigned([_port(tp) for tp in partitions])

        def revoked(_: Any, partitions: list[CkPartition]) -> None:
            if on_revoked is not None:
                on_revoked([_port(tp) for tp in partitions])

        def lost(_: Any, partitions: list[CkPartition]) -> None:
            callback = on_lost if on_lost is not None else on_revoked
            if callback is not None:
                callback([_port(tp) for tp in partitions])

        try:
            self._c.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)
        except KafkaException as exc:
            raise translate(exc) from exc

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Record]]:
        # `consume` returns only when its batch is full or its whole timeout has passed:
        # wait with `poll`, which returns at the first message, then take what is ready.
        try:
            first = self._c.poll(max(0.0, timeout_s))
            if first is None:
                return {}
            messages = [first]
            if self._max_records > 1:
                messages += self._c.consume(self._max_records - 1, 0)
        except KafkaException as exc:
            raise translate(exc) from exc
        polled: dict[TopicPartition, list[Record]] = {}
        for m in messages:
            err = m.error()
            if err is not None:
                self._consume_error(m, err)
                continue
            tp = TopicPartition(m.topic(), m.partition())
            records = polled.get(tp)
            if records is None:
                records = polled[tp] = []
            records.append(ConsumedRecord(tp.topic, tp.partition, m.offset(), m.timestamp()[1],
                                          m.key(), m.value(), m.headers() or []))
        return polled

    def _consume_error(self, m: Any, err: KafkaError) -> None:
        """End of a partition is noted; refusals and fatal errors raise; others log."""
        if err.code() == KafkaError._PARTITION_EOF:
            self._eof[TopicPartition(m.topic(), m.partition())] = m.offset()
            return
        if err.fatal() or err.code() in _DENIED:
            raise translate(KafkaException(err), names=(m.topic(),) if m.topic() else ())
        logger.warning("consumer: %s", err.str())

    def assignment(self) -> set[TopicPartition]:
        return {_port(tp) for tp in self._c.assignment()}

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = [tp for tp in partitions if tp not in self._paused]
        if wanted:
            self._c.pause([_ck(tp) for tp in wanted])
            self._paused.update(wanted)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = [tp for tp in partitions if tp in self._paused]
        if wanted:
            self._c.resume([_ck(tp) for tp in wanted])
            self._paused.difference_update(wanted)

    def paused(self) -> set[TopicPartition]:
        return self._paused & self.assignment()

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            answered = self._c.commit(offsets=[_ck(tp, o) for tp, o in offsets.items()],
                                      asynchronous=False)
        except KafkaException as exc:
            raise translate(exc) from exc
        failed = [tp for tp in answered or () if tp.error is not None]
        if failed:
            raise translate(KafkaException(failed[0].error))

    def highwater(self, partition: TopicPartition) -> int | None:
        try:
            _, high = self._c.get_watermark_offsets(_ck(partition), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    def group_metadata(self) -> Any:
        return self._c.consumer_group_metadata()

    def partitions_for(self, topic: str) -> set[int] | None:
        try:
            found = self._c.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise translate(exc) from exc
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._eof.clear()
        try:
            self._c.assign([_ck(tp, o) for tp, o in offsets.items()])
        except KafkaException as exc:
            raise translate(exc) from exc

    def seek(self, partition: TopicPartition, offset: int) -> None:
        # librdkafka seeks only a partition it already fetches; assigning it again at
        # the offset works in every state, and drops what was fetched ahead.
        self._eof.pop(partition, None)
        try:
            self._c.incremental_unassign([_ck(partition)])
            self._c.incremental_assign([_ck(partition, offset)])
        except KafkaException as exc:
            raise translate(exc) from exc

    def position(self, partition: TopicPartition, timeout_s: float) -> int | None:
        try:
            position = self._c.position([_ck(partition)])[0].offset
        except KafkaException as exc:
            raise translate(exc) from exc
        # The end of the partition, once reported, counts: past trailing transaction
        # markers no record moves the position.
        best = max(position, self._eof.get(partition, -1))
        return best if best >= 0 else None

    def watermarks(self, partitions: Iterable[TopicPartition], timeout_s: float,
                   ) -> dict[TopicPartition, tuple[int, int]]:
        found = {}
        try:
            for tp in partitions:
                found[tp] = tuple(self._c.get_watermark_offsets(_ck(tp), timeout=timeout_s))
        except KafkaException as exc:
            raise translate(exc) from exc
        return found  # type: ignore[return-value]

    def offsets_for_times(self, times: Mapping[TopicPartition, int], timeout_s: float,
                          ) -> dict[TopicPartition, int | None]:
        try:
            found = self._c.offsets_for_times([_ck(tp, ms) for tp, ms in times.items()],
                                              timeout=timeout_s)
        except KafkaException as exc:
            raise translate(exc) from exc
        return {_port(tp): (tp.offset if tp.offset >= 0 else None) for tp in found}

    def close(self) -> None:
        self._c.close()


class _Report(DeliveryReport):
    """A delivery report that is its own librdkafka delivery callback."""

    __slots__ = ()

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.acknowledged(msg.partition(), msg.offset())
        else:
            self.failed(translate(KafkaException(err), names=(msg.topic(),)))


class ConfluentProducer(Producer):
    """confluent-kafka's `Producer` behind the port."""

    client = "confluent"

    def __init__(self, settings: ProducerSettings, security: KafkaSecurity) -> None:
        self._errors = _Errors()
        config = {
            **_common(settings.bootstrap, settings.client_id, security, self._errors),
            "acks": "all",
            "enable.idempotence": True,
            "delivery.timeout.ms": settings.delivery_timeout_ms,
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_bytes,
            "message.max.bytes": MAX_REQUEST_BYTES,
            "partitioner": "murmur2_random",
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._stats,
        }
        if settings.transactional_id is not None:
            config["transactional.id"] = settings.transactional_id
        self._p = CkProducer(config)
        self._delivery_timeout_s = settings.delivery_timeout_ms / 1000
        self._counts: dict[str, float] = {}
        self._rates: dict[str, float] = {"record-retry-rate": 0.0, "record-error-rate": 0.0}
        self._partitions: dict[str, tuple[float, int]] = {}
        _connect(self._p, settings.bootstrap, self._errors, lambda: self._p.poll(0))

    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, *,
        partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
    ) -> _Report:
        report = _Report()
        kwargs: dict[str, Any] = {"value": value, "key": key, "on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        deadline = None
        while True:
            try:
                self._p.produce(topic, **kwargs)
                return report
            except BufferError:  # the local queue is full: serve reports until room
                deadline = deadline or time.monotonic() + self._delivery_timeout_s
                if time.monotonic() > deadline:
                    raise KafkaClientError(
                        f"the producer's queue stayed full for {self._delivery_timeout_s:.0f}s "
                        "(the broker takes nothing?)", retriable=True) from None
                self._p.poll(0.05)
            except KafkaException as exc:
                raise translate(exc, names=(topic,)) from exc

    def poll(self, timeout_s: float = 0.0) -> None:
        self._p.poll(timeout_s)

    def flush(self, timeout_s: float = 120.0) -> bool:
        return self._p.flush(timeout_s) == 0

    def partition_count(self, topic: str) -> int:
        now = time.monotonic()
        known = self._partitions.get(topic)
        if known is not None and known[0] > now:
            return known[1]
        try:
            found = self._p.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise translate(exc, names=(topic,)) from exc
        if found is None or found.error is not None:
            raise KafkaClientError(f"topic {topic!r} has no partitions in the metadata: "
                                   f"{found.error if found is not None else 'unknown'}")
        self._partitions[topic] = (now + PARTITION_COUNT_TTL_S, len(found.partitions))
        return len(found.partitions)

    def _transact(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except KafkaException as exc:
            raise translate(exc) from exc

    def init_transactions(self, timeout_s: float) -> None:
        self._transact(self._p.init_transactions, timeout_s)

    def begin_transaction(self) -> None:
        self._transact(self._p.begin_transaction)

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float,
    ) -> None:
        self._transact(self._p.send_offsets_to_transaction,
                       [_ck(tp, o) for tp, o in offsets.items()], group_metadata, timeout_s)

    def commit_transaction(self, timeout_s: float) -> None:
        self._transact(self._p.commit_transaction, timeout_s)

    def abort_transaction(self, timeout_s: float) -> None:
        self._transact(self._p.abort_transaction, timeout_s)

    def _stats(self, text: str) -> None:
        """Retry and error rates from librdkafka's statistics (served by `poll`)."""
        try:
            stats = json.loads(text)
            now = stats["ts"] / 1e6  # microseconds
            brokers = stats.get("brokers", {}).values()
            counts = {"record-retry-rate": float(sum(b.get("txretries", 0) for b in brokers)),
                      "record-error-rate": float(sum(b.get("txerrs", 0) for b in brokers)),
                      "ts": now}
        except (ValueError, KeyError, TypeError):
            return
        if self._counts:
            seconds = max(1e-3, now - self._counts["ts"])
            for name in self._rates:
                self._rates[name] = max(0.0, counts[name] - self._counts[name]) / seconds
        self._counts = counts

    def rates(self) -> dict[str, float]:
        return dict(self._rates)

    def close(self, timeout_s: float = 30.0) -> None:
        self._p.flush(timeout_s)


class ConfluentAdmin(Admin):
    """confluent-kafka's `AdminClient` behind the port."""

    client = "confluent"

    def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity) -> None:
        self._errors = _Errors()
        self._a = AdminClient(_common(bootstrap, client_id, security, self._errors))
        _connect(self._a, bootstrap, self._errors, lambda: self._a.poll(0))

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
