"""Read topic partitions from their beginning to their end, once, outside any group.

Tools that need a topic's content as it is now (training on the events topic,
restoring histories from their changelog, `streamrec state dump`) share this one
reader: a group-less consumer assigned to the partitions at their beginning (or at a time),
stopped at the end offsets taken when the read started, so a live topic still gives
a finite read. Reading never creates a topic, whatever the broker allows. Offsets
may have gaps (compaction, transaction markers): a partition is done when the
consumer's position reaches its end offset, not when a record with the last offset
arrives. `TopicFollower` reads the same way and then goes on: a topic every worker
holds whole (the items topic).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable

from streamrec.kafka_io.clients import make_consumer
from streamrec.kafka_io.errors import KafkaClientError, KafkaUnavailableError, TopicNotFoundError
from streamrec.kafka_io.port import OFFSET_BEGINNING, Consumer, Record, TopicPartition
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.5
MAX_POLL_RECORDS = 5000  # a bulk read: fewer, larger polls
TIMEOUT_S = 30.0  # one metadata or offsets question


def read_to_end(
    bootstrap: str, topic: str, partitions: Iterable[int] | None = None, *, client_id: str,
    security: KafkaSecurity | None = None, timeout_s: float = 300.0,
    progress: Callable[[int], None] | None = None, since_ms: int | None = None,
) -> Generator[Record, None, None]:
    """Every record of `topic`'s `partitions` (all when None) below their end offsets.

    With `since_ms`, each partition starts at its first record whose timestamp is at
    or after it (the broker's time index: `offsets_for_times`), not at the beginning.

    Records come in offset order within a partition; partitions interleave. The end
    offsets are taken at the start (the last stable offset: the consumer reads
    committed data only). `progress(n)` is called after each poll with the number of
    records yielded so far. Raises `TopicNotFoundError` (a `KafkaUnavailableError`)
    if the topic or a requested partition does not exist, and `KafkaUnavailableError`
    if the broker fails or the whole read takes longer than `timeout_s` (time the
    caller spends between records counts too). A generator: `close()` it to stop
    early and close the consumer at once.
    """
    wanted = None if partitions is None else sorted(set(partitions))
    if wanted == []:
        return
    deadline = time.monotonic() + timeout_s
    consumer = make_consumer(bootstrap, None, client_id, security,
                             max_poll_records=MAX_POLL_RECORDS)
    try:
        tps, ends = _assign(consumer, bootstrap, topic, wanted, since_ms)
        remaining = _unfinished(consumer, tps, ends, deadline)
        logger.debug("reading %s partitions %s up to %s", topic,
                     [tp.partition for tp in tps], {tp.partition: ends[tp] for tp in tps})
        yielded = 0
        while remaining:
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"reading topic {topic!r} took longer than {timeout_s:.0f}s; partitions "
                    f"{sorted(tp.partition for tp in remaining)} unfinished: is the broker "
                    f"overloaded? raise the timeout")
            try:
                polled = consumer.poll(POLL_TIMEOUT_S)
            except KafkaClientError as exc:
                raise KafkaUnavailableError(f"reading topic {topic!r} failed: {exc}") from exc
            for tp, records in polled.items():
                end = ends[tp]
                for rec in records:
                    if rec.offset >= end:
                        break
                    yielded += 1
                    yield rec
            if progress is not None and polled:
                progress(yielded)
            still = _unfinished(consumer, remaining, ends, deadline)
            if remaining - still:
                consumer.pause(remaining - still)  # done: fetch nothing more there
            remaining = still
    finally:
        consumer.close()


def _unfinished(
    consumer: Consumer, tps: Iterable[TopicPartition], ends: dict[TopicPartition, int],
    deadline: float,
) -> set[TopicPartition]:
    """The partitions whose position is still short of (or not yet known before) their end."""
    timeout_s = max(0.001, deadline - time.monotonic())
    unfinished = set()
    try:
        for tp in tps:
            position = consumer.position(tp, timeout_s)
            if position is None or position < ends[tp]:
                unfinished.add(tp)
    except KafkaClientError as exc:
        raise KafkaUnavailableError(
            f"cannot read the positions of {sorted(tp.partition for tp in tps)}: {exc}"
        ) from exc
    return unfinished


def _times_to_offsets(consumer: Consumer, topic: str, tps: list[TopicPartition],
                      ends: dict[TopicPartition, int], since_ms: int) -> dict[TopicPartition, int]:
    """Each partition's first offset whose record is at or after `since_ms` (its end if none)."""
    try:
        found = consumer.offsets_for_times({tp: max(0, since_ms) for tp in tps}, TIMEOUT_S)
    except KafkaClientError as exc:
        raise KafkaUnavailableError(f"cannot look up offsets by time in {topic!r}: {exc}") from exc
    return {tp: at if (at := found.get(tp)) is not None else ends[tp] for tp in tps}


def _existing(
    consumer: Consumer, bootstrap: str, topic: str, wanted: list[int] | None,
) -> list[TopicPartition]:
    """The `wanted` partitions of `topic` (all when None); `TopicNotFoundError` if the
    topic or one of them does not exist."""
    existing = consumer.partitions_for(topic)
    if not existing:
        raise TopicNotFoundError(f"topic {topic!r} does not exist at {bootstrap}")
    if wanted is None:
        wanted = sorted(existing)
    missing = [p for p in wanted if p not in existing]
    if missing:
        raise TopicNotFoundError(
            f"topic {topic!r} has partitions {sorted(existing)}, not {missing}")
    return [TopicPartition(topic, p) for p in wanted]


def _assign(
    consumer: Consumer, bootstrap: str, topic: str, wanted: list[int] | None,
    since_ms: int | None = None,
) -> tuple[list[TopicPartition], dict[TopicPartition, int]]:
    """Assign the partitions at their beginning (at their first record from `since_ms`
    on, when given); returns them and their end offsets.

    The start offsets are looked up before the assignment, never sought after it: a
    client may already deliver records fetched from the assigned offset before a seek
    takes effect.
    """
    tps = _existing(consumer, bootstrap, topic, wanted)
    try:
        marks = consumer.watermarks(tps, TIMEOUT_S)
    except KafkaClientError as exc:
        raise KafkaUnavailableError(f"cannot read the end offsets of {topic!r}: {exc}") from exc
    ends = {tp: end for tp, (_, end) in marks.items()}
    if since_ms is None:
        starts = dict.fromkeys(tps, OFFSET_BEGINNING)
    else:
        starts = _times_to_offsets(consumer, topic, tps, ends, since_ms)
    consumer.assign(starts)
    return tps, ends


def partitions_of(
    bootstrap: str, topic: str, *, client_id: str = "streamrec-metadata",
    security: KafkaSecurity | None = None,
) -> list[int]:
    """The partition ids of `topic`; `TopicNotFoundError` if it does not exist."""
    consumer = make_consumer(bootstrap, None, client_id, security, allow_auto_create_topics=False)
    try:
        existing = consumer.partitions_for(topic)
    except KafkaClientError as exc:
        raise KafkaUnavailableError(f"cannot read the metadata of {topic!r}: {exc}") from exc
    finally:
        consumer.close()
    if not existing:
        raise TopicNotFoundError(f"topic {topic!r} does not exist at {bootstrap}")
    return sorted(existing)


def record_spans(
    bootstrap: str, topic: str, partitions: Iterable[int], *, client_id: str,
    security: KafkaSecurity | None = None,
) -> dict[int, int]:
    """Per partition, its end offset minus its beginning offset: the records a read from
    the beginning gets at most (compaction and transaction markers leave gaps).
    `TopicNotFoundError` if the topic or a partition does not exist."""
    wanted = sorted(set(partitions))
    consumer = make_consumer(bootstrap, None, client_id, security)
    try:
        tps = _existing(consumer, bootstrap, topic, wanted)
        marks = consumer.watermarks(tps, TIMEOUT_S)
    except KafkaClientError as exc:
        raise KafkaUnavailableError(f"cannot read the offsets of {topic!r}: {exc}") from exc
    finally:
        consumer.close()
    return {tp.partition: end - begin for tp, (begin, end) in marks.items()}


class OffsetReader:
    """Records at given offsets of a topic, many per call, through one long-lived consumer.

    The worker's user cap reads evicted users back while events flow. A consumer per
    read would cost a connection, a metadata round trip and a fetch session per
    returning user; this keeps one group-less consumer open, and for each call seeks
    to the first wanted offset and reads forward, seeking again only across gaps
    wider than `max_gap` records. Fetches are kept small (`fetch_bytes`) because
    wanted records are usually scattered. Close it when done.
    """

    def __init__(
        self, bootstrap: str, topic: str, *, client_id: str,
        security: KafkaSecurity | None = None, timeout_s: float = 60.0, max_gap: int = 64,
        fetch_bytes: int = 64 * 1024,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self.security = security
        self.timeout_s = timeout_s
        self.max_gap = max_gap
        self.fetch_bytes = fetch_bytes
        self.seeks = 0  # seeks so far (each costs a fetch round trip): for tests and logs
        self._consumer: Consumer | None = None

    def read(self, partition: int, offsets: Iterable[int]) -> dict[int, Record]:
        """The records at `offsets` of one partition; ones that are gone (compacted,
        aborted) are left out. Raises KafkaUnavailableError past `timeout_s`."""
        wanted = sorted(set(offsets))
        found: dict[int, Record] = {}
        if not wanted:
            return found
        tp = TopicPartition(self.topic, partition)
        consumer = self._open()
        deadline = time.monotonic() + self.timeout_s
        try:
            wanted_set = set(wanted)
            i = 0
            while i < len(wanted):
                if consumer.assignment() != {tp}:
                    consumer.assign({tp: wanted[i]})
                else:
                    consumer.seek(tp, wanted[i])
                self.seeks += 1
                while i < len(wanted):
                    if time.monotonic() > deadline:
                        raise KafkaUnavailableError(
                            f"reading {len(wanted)} records of {self.topic}/{partition} took "
                            f"over {self.timeout_s:.0f}s ({len(found)} found)")
                    records = consumer.poll(POLL_TIMEOUT_S).get(tp, [])
                    if not records:
                        continue
                    for rec in records:
                        if rec.offset in wanted_set:
                            found[rec.offset] = rec
                    last = records[-1].offset
                    while i < len(wanted) and wanted[i] <= last:
                        i += 1
                    if i < len(wanted) and wanted[i] - last > self.max_gap:
                        break  # cheaper to seek than to read through the gap
            # Idle between reads: librdkafka would go on fetching in the background
            # (every `fetch_max_wait_ms` at the end of the partition), and resuming a
            # paused partition can take it a second; an empty assignment fetches nothing.
            consumer.assign({})
        except KafkaClientError as exc:
            raise KafkaUnavailableError(f"cannot read {self.topic}/{partition}: {exc}") from exc
        return found

    def close(self) -> None:
        """Close the consumer (a later `read` opens a new one)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _open(self) -> Consumer:
        if self._consumer is None:
            self._consumer = make_consumer(
                self.bootstrap, None, self.client_id, self.security,
                max_poll_records=MAX_POLL_RECORDS,
                # A seek waits for the fetch in flight (librdkafka): keep its wait short.
                max_partition_fetch_bytes=self.fetch_bytes, fetch_max_wait_ms=5)
        return self._consumer


class TopicFollower:
    """Every partition of a topic from its beginning, then on as records arrive, outside
    any group: a topic read as a table every reader holds whole (the worker's items).

    `caught_up()` turns true once every partition was read to the end offsets taken
    when the follower opened, and stays true. Partitions added to the topic later are
    not followed (a new follower reads them). Not thread-safe: one thread polls it.
    """

    def __init__(self, bootstrap: str, topic: str, *, client_id: str,
                 security: KafkaSecurity | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self.security = security
        self._consumer: Consumer | None = None
        self._tps: list[TopicPartition] = []
        self._ends: dict[TopicPartition, int] = {}
        self._caught_up = False

    def open(self) -> None:
        """Assign every partition from its beginning; `TopicNotFoundError` if the topic
        does not exist."""
        self._consumer = make_consumer(self.bootstrap, None, self.client_id, self.security,
                                       max_poll_records=MAX_POLL_RECORDS)
        self._tps, self._ends = _assign(self._consumer, self.bootstrap, self.topic, None)

    def poll(self, timeout_s: float) -> list[Record]:
        """The records fetched, in offset order within each partition (waits at most
        `timeout_s` for some)."""
        if self._consumer is None:
            raise RuntimeError("TopicFollower.poll before open()")
        try:
            polled = self._consumer.poll(timeout_s)
        except KafkaClientError as exc:
            raise KafkaUnavailableError(f"reading topic {self.topic!r} failed: {exc}") from exc
        return [rec for records in polled.values() for rec in records]

    def caught_up(self) -> bool:
        """Whether every partition has been read up to its end offset at `open()`."""
        if not self._caught_up and self._consumer is not None:
            deadline = time.monotonic() + TIMEOUT_S
            self._caught_up = not _unfinished(self._consumer, self._tps, self._ends, deadline)
        return self._caught_up

    def behind(self) -> int:
        """Records between the positions and the high watermarks of the last fetches
        (a partition whose position or watermark is not known yet counts 0)."""
        if self._consumer is None:
            return 0
        total = 0
        for tp in self._tps:
            high = self._consumer.highwater(tp)
            try:
                position = self._consumer.position(tp, TIMEOUT_S)
            except KafkaClientError:
                continue
            if high is not None and position is not None:
                total += max(0, high - position)
        return total

    def close(self) -> None:
        """Close the consumer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
