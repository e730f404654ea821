"""Publishing: recommendations, dead letters and changelog records, acknowledged in bulk.

Sends are asynchronous and the worker does not wait for them batch by batch:
`collect()` takes the acknowledgements that have arrived (cheap, never blocks) and
`flush()` waits for all of them. Either raises `PublishError` if a record was not
acknowledged after the producer's retries. Every record gets a sequence number;
the worker commits offsets only once every record sent before them is confirmed
(`confirmed(seq)`), so an offset is never committed past a record that was not: a
record that could not be published is read again after a restart, never skipped.

Recommendation records go to the partition Kafka's default partitioner gives
their key (murmur2, as the Java client), computed once per user and kept: kafka-python
computes it in pure Python on every send, and librdkafka's own default is another hash.
Delivery reports are seen when `collect` or `flush` serves them (`Producer.poll`).
A batch's recommendations (built by `records.py`) and its changelog records each go
out in one `Producer.send_many` call. Record formats (recommendation, dead letter):
docs/CONTRACTS.md.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.partitioner import key_partition
from streamrec.kafka_io.port import Delivery, Keyed, Producer, TopicPartition
from streamrec.worker.batcher import BatchItem
from streamrec.worker.errors import PublishError
from streamrec.worker.records import recommendation_values, strategy
from streamrec.worker.validate import Invalid

if TYPE_CHECKING:  # the model stage's output type; importing it at run time loads torch
    from streamrec.worker.recommend import Recommendations

logger = logging.getLogger(__name__)

HEADER_REASON = "streamrec.reason"
HEADER_DETAIL = "streamrec.detail"
HEADER_SOURCE = "streamrec.source"  # "topic/partition/offset"
HEADER_TRUNCATED = "streamrec.original-bytes"
PARTITION_CACHE_USERS = 500_000  # key -> partition entries kept before starting over
TRANSACTION_TIMEOUT_S = 60.0  # one transactional call (init, offsets, commit, abort)
# The worker's producer (`make_producer` settings). Large batches: it sends two records
# per changed user. A short linger: a batch's records go out in one `send_many` call, so
# waiting for more adds latency and little batching. Measured (2026-12-07, AMD EPYC, 2
# cores, the games model at 3,700 events/s, 4 pairs alternating with Kafka's 5 ms): p50
# 16-21 ms against 19-25, p99 after the first 5 s 28-45 against 32-46, the same CPU.
PRODUCER_SETTINGS = {"batch_bytes": 512 * 1024, "linger_ms": 1}


@dataclass
class Acked:
    """What one `collect` or `flush` confirmed."""

    recommendations: Counter[str] = field(default_factory=Counter)  # by strategy
    dead_letters: int = 0
    # partition, user, offset, sequence number
    changelog: list[tuple[int, str, int, int]] = field(default_factory=list)
    record_ts: list[int] = field(default_factory=list)  # per recommendation: its record time

    def __bool__(self) -> bool:
        return bool(self.recommendations or self.dead_letters or self.changelog)


class Publisher:
    """Sends records as they come and confirms them in bulk (`collect`, `flush`)."""

    def __init__(
        self, producer: Producer, recommendations_topic: str, dead_letter_topic: str,
        dead_letter_max_bytes: int, transactional: bool = False,
    ) -> None:
        self.producer = producer
        self.recommendations_topic = recommendations_topic
        self.dead_letter_topic = dead_letter_topic
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.transactional = transactional
        self._in_transaction = False
        # seq, delivery, kind, record_ts (recommendations), user (changelog); oldest first
        self._inflight: deque[tuple[int, Any, str, int, str]] = deque()
        self._seq = 0  # records sent so far
        self._partitions: dict[bytes, int] = {}  # key -> partition of the recommendations topic
        self._partition_count = 0
        if transactional:
            # Fences older instances with the same transactional id and aborts a
            # transaction a killed predecessor left open.
            producer.init_transactions(TRANSACTION_TIMEOUT_S)

    @property
    def inflight(self) -> int:
        """Records sent and not yet confirmed by `collect` or `flush`."""
        return len(self._inflight)

    @property
    def sent(self) -> int:
        """Sequence number of the next record: every record before it has been sent."""
        return self._seq

    def confirmed(self, seq: int) -> bool:
        """True when every record numbered below `seq` is acknowledged (as far as
        `collect`/`flush` have seen)."""
        return not self._inflight or self._inflight[0][0] >= seq

    def _key_partitions(self, topic: str) -> dict[bytes, int]:
        """The key -> partition cache, reset when the topic's partition count changes."""
        count = self.producer.partition_count(topic)
        if count != self._partition_count or len(self._partitions) > PARTITION_CACHE_USERS:
            self._partitions = {}
            self._partition_count = count
        return self._partitions

    def _send(self, topic: str, kind: str, **kwargs: Any) -> None:
        """Send one record (inside the open transaction, when transactional)."""
        self._begin()
        delivery = self.producer.send(topic, **kwargs)
        self._inflight.append((self._seq, delivery, kind, 0, ""))
        self._seq += 1

    def _send_many(self, topic: str, records: list[Keyed], kinds: list[str],
                   record_ts: list[int] | None = None, users: list[str] | None = None,
                   ) -> None:
        """Send records of one topic in one call; per record its kind and, for
        recommendations, the record time of its event, for changelog records the user."""
        if not records:
            return
        self._begin()
        deliveries = self.producer.send_many(topic, records)
        n, first = len(records), self._seq
        self._inflight.extend(zip(range(first, first + n), deliveries, kinds,
                                  record_ts or repeat(0, n), users or repeat("", n),
                                  strict=True))
        self._seq += n

    def _begin(self) -> None:
        """Open a transaction for what is sent next, when transactional and none is open."""
        if self.transactional and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True

    def send_recommendations(
        self, batch: list[BatchItem], recs: Recommendations, histories: np.ndarray,
        external_ids: np.ndarray, model_version: str, explain_top: int,
    ) -> None:
        """Queue one record per batch row; `external_ids[row]` names item rows."""
        values = recommendation_values(batch, recs, histories, external_ids, model_version,
                                       explain_top)
        topic = self.recommendations_topic
        partitions = self._key_partitions(topic)
        count = self._partition_count
        records = []
        for item, value in zip(batch, values, strict=True):
            key = item.user_id.encode()
            partition = partitions.get(key)
            if partition is None:  # as the Java client's default partitioner
                partition = partitions[key] = key_partition(key, count)
            records.append((key, value, partition))
        kinds = [strategy(p) for p in recs.popular.tolist()]
        self._send_many(topic, records, kinds, [item.record_ts for item in batch])

    def send_dead_letter(
        self, key: bytes | None, value: bytes | None, invalid: Invalid, source: str,
    ) -> None:
        """Queue a rejected record: original bytes, the reason in headers."""
        headers = [
            (HEADER_REASON, invalid.reason.encode()),
            (HEADER_DETAIL, invalid.detail.encode("utf-8", "replace")[:512]),
            (HEADER_SOURCE, source.encode()),
        ]
        if value is not None and len(value) > self.dead_letter_max_bytes:
            headers.append((HEADER_TRUNCATED, str(len(value)).encode()))
            value = value[: self.dead_letter_max_bytes]
        if key is not None and len(key) > self.dead_letter_max_bytes:
            key = key[: self.dead_letter_max_bytes]
        self._send(self.dead_letter_topic, "dlq", key=key, value=value, headers=headers)

    def send_changelog(self, topic: str, partition: int, users: list[str],
                       values: list[bytes]) -> int:
        """Queue users' history records to the changelog partition that mirrors their
        events; returns the sequence number of the first."""
        first = self._seq
        self._send_many(topic, [(u.encode(), v, partition) for u, v in zip(users, values,
                                                                             strict=True)],
                        ["changelog"] * len(users), users=users)
        return first

    def collect(self) -> Acked:
        """The acknowledgements that have arrived, oldest first; never waits.

        Raises `PublishError` when a record failed after the producer's retries.
        """
        self.producer.poll(0)  # librdkafka reports deliveries only from here
        acked = Acked()
        failures: list[tuple[str, BaseException]] = []
        inflight = self._inflight
        while inflight and inflight[0][1].done:
            self._account(inflight.popleft(), acked, failures)
        self._raise(failures)
        return acked

    def flush(self, timeout_s: float = 120.0) -> Acked:
        """Wait for every queued record; raise `PublishError` if any failed."""
        if not self._inflight:
            return Acked()
        self.producer.flush(timeout_s)
        acked = Acked()
        failures: list[tuple[str, BaseException]] = []
        inflight, self._inflight = self._inflight, deque()
        for entry in inflight:
            self._account(entry, acked, failures)
        self._raise(failures, total=len(inflight))
        return acked

    @staticmethod
    def _account(entry: tuple[int, Delivery, str, int, str], acked: Acked,
                 failures: list[tuple[str, BaseException]]) -> None:
        seq, delivery, kind, record_ts, user = entry
        if not delivery.done:  # `flush` gave up waiting for it
            failures.append((kind, KafkaClientError("not acknowledged before the timeout",
                                                    retriable=True)))
        elif delivery.error is not None:
            failures.append((kind, delivery.error))
        elif kind == "dlq":
            acked.dead_letters += 1
        elif kind == "changelog":
            acked.changelog.append((delivery.partition, user, delivery.offset, seq))
        else:
            acked.recommendations[kind] += 1
            acked.record_ts.append(record_ts)

    def _raise(self, failures: list[tuple[str, BaseException]], total: int = 0) -> None:
        if not failures:
            return
        self._inflight.clear()
        for kind, exc in failures:
            logger.error("%s record not acknowledged after retries: %s", kind, exc)
        raise PublishError(
            f"{len(failures)} of {total or len(failures)} records not acknowledged after "
            f"retries (first: {failures[0][0]}: {failures[0][1]}); offsets not committed",
            kinds=[kind for kind, _ in failures],
        ) from next((e for _, e in failures if getattr(e, "denied", None)), failures[0][1])

    def commit_transaction(self, offsets: dict[TopicPartition, int], group_metadata: Any,
                           ) -> Acked:
        """Commit the records sent since the last commit and the consumed `offsets` as one
        transaction.

        Consumers reading with isolation_level=read_committed then see the records
        exactly when the offsets that produced them are committed: never twice, never half.
        """
        if not offsets and not self._in_transaction:
            return Acked()
        self._begin()
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, group_metadata,
                                                          TRANSACTION_TIMEOUT_S)
            self.producer.commit_transaction(TRANSACTION_TIMEOUT_S)
        except KafkaClientError as exc:
            self._inflight.clear()
            raise PublishError(f"transaction not committed: {exc}; offsets not committed",
                               kinds=["transaction"]) from exc
        finally:
            self._in_transaction = False
        return self.flush()

    def abort_transaction(self) -> None:
        """Abort the open transaction (if any): its records are never seen committed."""
        self._inflight.clear()
        if self._in_transaction:
            self._in_transaction = False
            try:
                self.producer.abort_transaction(TRANSACTION_TIMEOUT_S)
            except KafkaClientError as exc:
                logger.warning("abort_transaction failed: %s", exc)
