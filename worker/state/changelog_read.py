"""Reading the histories changelog: the latest record per user, for restores, and
records read back at known offsets, for users evicted from memory.

The record format is `changelog.py`'s; the worker's own restore decodes what
`LatestRead` hands out in bulk (`changelog_bulk.decode_rows`, in `durable.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import OffsetReader, read_to_end
from streamrec.worker.errors import ChangelogError
from streamrec.worker.state.changelog import (
    HistoryRecord,
    changelog_topic,
    decode_history,
    header_problem,
)
from streamrec.worker.state.changelog_bulk import BULK_CHUNK

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreStats:
    """What one restore read: for logs, metrics and tests."""

    records: int  # changelog records read (tombstones and bad ones included)
    users: int  # users restored (after compaction of the read)
    tombstones: int  # records with no value: the user's history was deleted
    invalid: int  # records whose key or value could not be decoded (skipped)
    seconds: float  # wall time of the read


@dataclass
class LatestChunk:
    """The latest records of some of one partition's users, as read: `values[user] =
    (value, changelog offset)`, undecoded, and the users whose latest record here is
    a tombstone (`deleted`; never also in `values`)."""

    partition: int
    values: dict[str, tuple[bytes, int]]
    deleted: set[str]


class LatestRead:
    """The latest changelog record of every user of `partitions`, in chunks of at most
    `chunk` users of one partition each, handed out while the read goes on.

    A restore decodes each chunk as it comes, so it never holds every raw value at
    once (about 0.8 GB for a million users at L = 50). Apply chunks in the order
    given: a user's record or tombstone in a later chunk replaces what an earlier one
    said. Which record counts: the last per key, a tombstone deletes the user, and a
    record whose key is missing or not UTF-8, or whose value's header is not one this
    version reads (`header_problem`: another format, a future version, too short for
    its timestamps), is logged, counted in `invalid` and skipped, so the user keeps
    their previous record; the rest of a value is checked by whoever decodes it.
    Iterating raises `TopicNotFoundError` if the changelog topic (or a partition) does
    not exist, `KafkaUnavailableError` if the broker fails or the read outlasts
    `timeout_s`. The counters are final once the iteration ends.
    """

    def __init__(
        self, bootstrap: str, group_id: str, partitions: Iterable[int], *,
        security: KafkaSecurity | None = None, timeout_s: float = 300.0,
        chunk: int = BULK_CHUNK, progress: Callable[[int], None] | None = None,
    ) -> None:
        self.progress = progress  # called after each poll with the records read so far
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.partitions = sorted(set(partitions))
        self.security = security
        self.timeout_s = timeout_s
        self.chunk = chunk
        self.readers = 1  # processes that read (`parallel_read.ParallelLatestRead`: more)
        self.records = self.tombstones = self.invalid = 0
        self._start = time.perf_counter()

    def __iter__(self) -> Iterator[LatestChunk]:
        topic = changelog_topic(self.group_id)
        self._start = time.perf_counter()
        pending = {p: LatestChunk(p, {}, set()) for p in self.partitions}
        for rec in read_to_end(self.bootstrap, topic, self.partitions,
                               client_id=f"{self.group_id}-restore", security=self.security,
                               timeout_s=self.timeout_s, progress=self.progress):
            self.records += 1
            try:
                if rec.key is None:
                    raise ChangelogError("record has no key (the user id)")
                user = rec.key.decode("utf-8")
            except (ChangelogError, UnicodeDecodeError) as exc:
                self.invalid += 1
                logger.warning("skipped changelog record %s/%d/%d: %s", topic, rec.partition,
                               rec.offset, exc)
                continue
            chunk = pending[rec.partition]
            if rec.value is None:
                self.tombstones += 1
                chunk.values.pop(user, None)
                chunk.deleted.add(user)
            elif (problem := header_problem(rec.value)) is not None:
                self.invalid += 1  # the user keeps the history of their previous record
                logger.warning("skipped changelog record %s/%d/%d: %s", topic, rec.partition,
                               rec.offset, problem)
                continue
            else:
                chunk.values[user] = (rec.value, rec.offset)
                chunk.deleted.discard(user)
            if len(chunk.values) + len(chunk.deleted) >= self.chunk:
                yield chunk
                pending[rec.partition] = LatestChunk(rec.partition, {}, set())
        for chunk in pending.values():
            if chunk.values or chunk.deleted:
                yield chunk

    def stats(self, users: int) -> RestoreStats:
        """The read's counters, with the `users` its reader ended up with."""
        return RestoreStats(records=self.records, users=users, tombstones=self.tombstones,
                            invalid=self.invalid, seconds=time.perf_counter() - self._start)


def read_latest(
    bootstrap: str, group_id: str, partitions: Iterable[int], *,
    security: KafkaSecurity | None = None, timeout_s: float = 300.0,
) -> tuple[dict[int, dict[str, tuple[bytes, int]]], RestoreStats]:
    """All of `LatestRead` at once: `latest[partition][user] = (value, changelog
    offset)` for every user of `partitions` (an entry, maybe empty, per partition)."""
    read = LatestRead(bootstrap, group_id, partitions, security=security, timeout_s=timeout_s)
    latest: dict[int, dict[str, tuple[bytes, int]]] = {p: {} for p in read.partitions}
    for chunk in read:
        users = latest[chunk.partition]
        for user in chunk.deleted:
            users.pop(user, None)
        users.update(chunk.values)
    return latest, read.stats(users=sum(len(u) for u in latest.values()))


def restore_partitions(
    bootstrap: str, group_id: str, partitions: Iterable[int], *,
    security: KafkaSecurity | None = None, timeout_s: float = 300.0,
    positions: dict[tuple[int, str], int] | None = None,
) -> tuple[dict[int, dict[str, HistoryRecord]], RestoreStats]:
    """The latest history of every user of `partitions`, read from the group's changelog.

    Returns `(histories, stats)`: `histories[partition][user_id]`, with an entry
    (maybe empty) for every requested partition; `read_latest` says which record
    counts. A value that does not decode is logged and counted in `stats.invalid`
    (its user left out), never fatal. When `positions` is given, it is filled with
    the changelog offset of each returned record, keyed (partition, user). The
    worker's own restore decodes in bulk instead (`DurableHistories.restore`).
    """
    began = time.perf_counter()
    latest, stats = read_latest(bootstrap, group_id, partitions, security=security,
                                timeout_s=timeout_s)
    topic = changelog_topic(group_id)
    histories: dict[int, dict[str, HistoryRecord]] = {}
    invalid = stats.invalid
    for partition, users in latest.items():
        decoded = histories[partition] = {}
        for user, (value, offset) in users.items():
            try:
                decoded[user] = decode_history(value)
            except ChangelogError as exc:
                invalid += 1
                logger.warning("skipped changelog record %s/%d/%d: %s", topic, partition,
                               offset, exc)
                continue
            if positions is not None:
                positions[(partition, user)] = offset
    stats = dataclasses.replace(stats, users=sum(len(u) for u in histories.values()),
                                invalid=invalid, seconds=time.perf_counter() - began)
    logger.info("restored %d users of partitions %s from %s: %d records in %.2fs "
                "(%d tombstones, %d invalid)", stats.users, sorted(latest), topic,
                stats.records, stats.seconds, stats.tombstones, stats.invalid)
    return histories, stats


def fetch_histories(
    reader: OffsetReader, partition: int, positions: dict[str, int],
) -> dict[str, HistoryRecord]:
    """The records of users evicted from memory, read back at their changelog offsets.

    A record whose key is not the user asked for (the eviction index keys users by a
    64-bit hash; a collision is possible in principle) is not returned: that user
    starts empty rather than with someone else's history.
    """
    by_offset = {offset: user for user, offset in positions.items()}
    found = reader.read(partition, by_offset)
    histories = {}
    for offset, rec in found.items():
        user = by_offset[offset]
        if rec.key == user.encode() and rec.value is not None:
            histories[user] = decode_history(rec.value)
    missing = set(positions) - set(histories)
    if missing:
        logger.warning("%d evicted users not found at their changelog offsets in partition %d",
                       len(missing), partition)
    return histories
