"""confluent-kafka's `Producer` behind the port: each send's delivery report is its own
callback, served by `poll`/`flush`; retry and error rates from librdkafka's statistics.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as CkProducer

from streamrec.kafka_io.confluent.base import (
    METADATA_TIMEOUT_S,
    ErrorLog,
    common_config,
    connect,
    to_ck,
    translate,
)
from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import (
    MAX_REQUEST_BYTES,
    Delivery,
    DeliveryReport,
    Keyed,
    Producer,
    ProducerSettings,
    TopicPartition,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)

PARTITION_COUNT_TTL_S = 30.0  # a topic's partition count is looked up again after this
STATS_INTERVAL_MS = 10_000  # librdkafka statistics (retry and error rates)


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
        self._errors = ErrorLog()
        config = {
            **common_config(settings.bootstrap, settings.client_id, security, self._errors),
            "acks": "all",
            "enable.idempotence": True,
            "delivery.timeout.ms": settings.record_timeout_ms,
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_bytes,
            "message.max.bytes": MAX_REQUEST_BYTES,
            "partitioner": "murmur2_random",
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._stats,
        }
        if settings.transactional_id is not None:
            config["transactional.id"] = settings.transactional_id
            config["transaction.timeout.ms"] = settings.transaction_timeout_ms
        self._p = CkProducer(config)
        self._delivery_timeout_s = settings.record_timeout_ms / 1000
        self._counts: dict[str, float] = {}
        self._rates: dict[str, float] = {"record-retry-rate": 0.0, "record-error-rate": 0.0}
        self._partitions: dict[str, tuple[float, int]] = {}
        connect(self._p, settings.bootstrap, self._errors, lambda: self._p.poll(0))

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

    def send_many(self, topic: str, records: Iterable[Keyed]) -> list[Delivery]:
        # One C call and one report per record, nothing else: `send`'s keyword dict and
        # frame cost about as much as the produce itself. A full queue or an error
        # hands the rest to `send`, which waits for room or raises.
        reports: list[Delivery] = []
        produce, add = self._p.produce, reports.append
        pending = iter(records)
        for key, value, partition in pending:
            report = _Report()
            try:
                produce(topic, value, key, partition, on_delivery=report)
            except (BufferError, KafkaException):
                add(self.send(topic, value, key, partition=partition))
                break
            add(report)
        reports += [self.send(topic, value, key, partition=partition)
                    for key, value, partition in pending]
        return reports

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
        if found is None:
            raise KafkaClientError(f"topic {topic!r} is not in the metadata")
        if found.error is not None:
            # A refused topic (its WRITE revoked) is answered here, not raised: the
            # error keeps `denied`, so the worker stops naming the ACL to grant (exit 2).
            why = translate(found.error, names=(topic,))
            raise KafkaClientError(f"topic {topic!r} has no partitions in the metadata: {why}",
                                   denied=why.denied, names=why.names, retriable=why.retriable)
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
                       [to_ck(tp, o) for tp, o in offsets.items()], group_metadata, timeout_s)

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
