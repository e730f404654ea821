"""Durable per-partition state: histories in memory, their changelog in Kafka.

The in-memory `PartitionStore`s (`partition.py`) are the fast copy; the compacted topic
`<group-id>-histories-changelog` (same partition count as the events topic, key =
user id, value = the whole bounded history and the offset of the last event
applied, see `changelog.py`) is the durable one. Changed users are written before
offsets are committed; a partition assigned to this worker is restored from its
changelog partition before its events are processed, and dropped when it moves
away. Histories hold every valid event's item, whether the serving model knows it
or not (`items.py`), and the changelog stores items by external id, so state
outlives a change of model and a new model sees the items it knows at once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Container
from dataclasses import dataclass

import numpy as np

from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.clients import TOPIC_READY_S, ensure_topics, make_admin
from streamrec.kafka_io.errors import KafkaUnavailableError
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import OffsetReader
from streamrec.worker.errors import ChangelogError, RestoreAbandonedError
from streamrec.worker.publish import Publisher
from streamrec.worker.state.changelog import (
    HistoryRecord,
    changelog_topic,
    decode_history,
    encode_rows,
)
from streamrec.worker.state.changelog_bulk import BULK_CHUNK, decode_rows
from streamrec.worker.state.changelog_read import LatestChunk, fetch_histories
from streamrec.worker.state.evicted import EvictedIndex
from streamrec.worker.state.items import DEFAULT_MAX_EXTRA, ItemTable, PreparedTable
from streamrec.worker.state.parallel_read import latest_read
from streamrec.worker.state.partition import PartitionStore

logger = logging.getLogger(__name__)

RESTORE_LOG_S = 5.0  # a restore logs its progress this often


@dataclass(frozen=True)
class Restored:
    """What one restore did, for logs and metrics."""

    partitions: tuple[int, ...]
    users: int
    records: int
    seconds: float
    readers: int = 1  # processes that read the changelog (1: the worker itself)


@dataclass(frozen=True)
class Changes:
    """Changed users of one partition and their state when their batch was cut: what
    the batch's recommendations answer, written to the changelog with them."""

    partition: int
    users: list[str]
    items: np.ndarray  # [n, L] item rows
    ts: np.ndarray  # [n, L]
    offsets: np.ndarray  # [n] applied events-topic offsets


@dataclass(frozen=True)
class Applied:
    """What applying a poll's events did: which were new, and the live quality sample."""

    fresh: np.ndarray  # [n] bool: not applied before (a replay after a crash is not)
    unknown: int  # new events whose item the serving model does not know (kept)
    not_kept: int  # of those, events whose item was not kept (past the unknown-item cap)
    judged: int  # new events of users who had been sent a recommendation
    hits: int  # of those, events whose item was in it
    ndcg: float  # sum over the judged events of NDCG@k (1 / log2(rank + 2) on a hit)


class DurableHistories:
    """Histories of the partitions this worker owns: one `PartitionStore` each, in
    memory, made durable by the changelog."""

    def __init__(
        self, max_len: int, vocab: ItemVocab, *, bootstrap: str, group_id: str,
        security: KafkaSecurity, max_users: int = 0, max_unknown_items: int = DEFAULT_MAX_EXTRA,
        restore_readers: int = 0,
    ) -> None:
        self.max_len = max_len
        self._stores: dict[int, PartitionStore] = {}
        self.items = ItemTable(vocab, max_extra=max_unknown_items)
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.security = security
        self.max_users = max_users  # per partition store; 0 = unbounded
        self.restore_readers = restore_readers  # reader processes of a large restore; 0 = cores
        self.topic = changelog_topic(group_id)
        # Users evicted by the cap: partition -> user -> changelog offset of their state.
        self._evicted: dict[int, EvictedIndex] = {}
        self._reader: OffsetReader | None = None  # reads evicted users back; opened on need
        self.read_back = 0  # evicted users read back from the changelog so far

    def store(self, partition: int) -> PartitionStore:
        """The partition's store, created empty on first use."""
        store = self._stores.get(partition)
        if store is None:
            store = self._stores[partition] = PartitionStore(self.max_len)
        return store

    def stores(self) -> list[tuple[int, PartitionStore]]:
        """(partition, store) pairs, by partition."""
        return sorted(self._stores.items())

    def rows(self, users: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """(items [B, L] left-padded, lengths [B]) of (partition, user) pairs: a batch."""
        by_partition: dict[int, list[int]] = defaultdict(list)
        for i, (partition, _) in enumerate(users):
            by_partition[partition].append(i)
        items = np.zeros((len(users), self.max_len), dtype=np.int64)
        lengths = np.zeros(len(users), dtype=np.int64)
        for partition, idx in by_partition.items():
            items[idx], lengths[idx] = self.store(partition).rows([users[i][1] for i in idx])
        return items, lengths

    def num_users(self) -> int:
        """Users held in memory across all partitions.

        Called by the metrics server's thread while the poll loop may add or drop a
        store: it counts a snapshot (`list()` copies the stores without giving up the GIL).
        """
        return sum(len(s) for s in list(self._stores.values()))

    def ensure_topic(self, events_topic: str, replication_factor: int | None = None) -> None:
        """Create the compacted changelog with the events topic's partition count.

        `replication_factor` None takes the broker's default; see docs/RELIABILITY.md
        for the `min.insync.replicas` the changelog needs on a replicated cluster.
        """
        admin = make_admin(self.bootstrap, "streamrec-state", self.security)
        try:
            # On a cluster a just-created events topic may not have reached the broker
            # asked yet: described then, it has no partitions (a 0-partition changelog).
            admin.wait_for_topics([events_topic], TOPIC_READY_S)
            described = admin.describe_topics([events_topic])
        finally:
            admin.close()
        info = described.get(events_topic)
        partitions = info.partitions if info is not None else 0
        if not partitions:
            raise KafkaUnavailableError(f"topic {events_topic} has no partitions in the "
                                        "cluster's metadata; start the worker again")
        ensure_topics(self.bootstrap, {self.topic: partitions},
                      configs={self.topic: {"cleanup.policy": "compact"}},
                      security=self.security, replication_factor=replication_factor)

    def apply(self, partition: int, users: list[str], items: list[str], ts: np.ndarray,
              offsets: np.ndarray) -> Applied:
        """Apply a partition's valid events (see `Applied` for what comes back).

        Users evicted by the cap are first read back from the changelog, so a
        returning user continues their history instead of starting a new one. Each
        new event is first judged against the last recommendation its user was sent
        (the live quality metrics).
        """
        evicted = self._evicted.get(partition)
        if evicted:
            back = evicted.pop(users)
            if back:
                self.read_back += len(back)
                self._load(partition, fetch_histories(self._offset_reader(), partition, back))
        rows = self.items.rows(items)
        store = self.store(partition)
        ranks = store.judge(users, rows)
        fresh = store.append(users, rows, ts, offsets)
        judged = ranks[fresh & (ranks > -2)]
        hits = judged[judged >= 0]
        new_rows = rows[fresh]
        return Applied(fresh=fresh,
                       unknown=int(((new_rows == 0) | (new_rows > self.items.known)).sum()),
                       not_kept=int((new_rows == 0).sum()),
                       judged=len(judged), hits=len(hits),
                       ndcg=float((1.0 / np.log2(hits + 2.0)).sum()))

    def change_vocab(self, vocab: ItemVocab, prepared: PreparedTable | None = None) -> None:
        """Serve a new model's vocabulary: every stored row is renumbered by external id,
        nothing is dropped, and items the new model knows count from the next batch.
        `prepared` (`ItemTable.prepare`, done on the loader thread) saves the loop the
        vocabulary's lookups."""
        done = self.items.finish(prepared if prepared is not None else self.items.prepare(vocab))
        self.items = done.table
        if done.remap is None:  # the serving vocabulary itself: no row changes (a 31,000-
            return  # user state's renumbering took 9-11 ms of the loop at 1M items)
        for _, store in self.stores():  # an extending vocabulary: only unknown items move
            store.remap_items(done.remap, done.stable)

    def recommended(self, users: list[tuple[int, str]], rows: np.ndarray) -> None:
        """Remember what these (partition, user) were just sent: rows [n, k]."""
        by_partition: dict[int, list[int]] = defaultdict(list)
        for i, (partition, _) in enumerate(users):
            by_partition[partition].append(i)
        for partition, idx in by_partition.items():
            store = self._stores.get(partition)
            if store is not None:
                store.recommended([users[i][1] for i in idx], rows[idx])

    def take_changes(self, users: list[tuple[int, str]]) -> list[Changes]:
        """The changed state of a batch's (partition, user) pairs, taken as the batch is
        cut (see `Changes`); `write_changes` sends it when the batch is published.

        Taking it at the cut, not at the publish, keeps a changelog record from covering
        events that arrived while the batch was in the model: a record at offset o
        means the recommendation answering o went out with it (in one transaction
        with exactly-once), so a replay of events at or below o need not be answered
        again. Several events of a user in one batch give one record.
        """
        by_partition: dict[int, list[str]] = defaultdict(list)
        for partition, user in users:
            by_partition[partition].append(user)
        out = []
        for partition, ids in by_partition.items():
            store = self._stores.get(partition)
            if store is not None:
                changed, items, ts, offsets = store.take_changes(ids)
                if changed:
                    out.append(Changes(partition, changed, items, ts, offsets))
        return out

    def write_changes(self, publisher: Publisher, changes: list[Changes],
                      owned: Container[int]) -> int:
        """Queue the changelog records of `changes` (right after the batch's
        recommendations) for the partitions still `owned`; offsets are committed only
        after these records are acknowledged."""
        written = 0
        for c in changes:
            store = self._stores.get(c.partition)
            if store is None or c.partition not in owned:
                continue  # the partition moved away while its batch was in the model
            first_seq = publisher.send_changelog(
                self.topic, c.partition, c.users,
                encode_rows(c.items, c.ts, c.offsets, self.items.id_table))
            store.mark_sent(c.users, first_seq)
            written += len(c.users)
        return written

    def note_written(self, written: list[tuple[int, str, int, int]]) -> None:
        """Remember where acknowledged changelog records landed: (partition, user, offset,
        publisher sequence number)."""
        for partition, user, offset, seq in written:
            self.store(partition).note_written(user, offset, seq)

    def evict(self) -> int:
        """Apply the per-partition user cap (only users already in the changelog go)."""
        if self.max_users <= 0:
            return 0
        count = 0
        for partition, store in self.stores():
            gone = store.evict(self.max_users)
            if gone:
                self._evicted.setdefault(partition, EvictedIndex()).add(gone)
            count += len(gone)
        return count

    def evicted_users(self) -> tuple[int, int]:
        """(users evicted and not back, bytes of their index) across partitions."""
        return (sum(len(i) for i in self._evicted.values()),
                sum(i.nbytes() for i in self._evicted.values()))

    def close(self) -> None:
        """Close the reader of evicted users, if one was opened."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _offset_reader(self) -> OffsetReader:
        if self._reader is None:
            self._reader = OffsetReader(self.bootstrap, self.topic,
                                        client_id=f"{self.group_id}-fetch",
                                        security=self.security)
        return self._reader

    def drop(self, partition: int) -> int:
        """Forget a partition this worker no longer owns; returns the users dropped."""
        self._evicted.pop(partition, None)
        store = self._stores.pop(partition, None)
        return len(store) if store is not None else 0

    def restore(self, partitions: list[int], progress: Callable[[], None] = lambda: None,
                stopping: Callable[[], bool] = lambda: False) -> Restored:
        """Load the partitions' histories from the changelog (replacing memory).

        Chunks of values are decoded as the read goes on (`LatestRead`; in reader
        processes when the restore is large, `parallel_read.py`), in bulk straight into
        the stores' arrays (`decode_rows`); the few the fast path does not take are
        decoded one by one, and a value that does not decode at all is logged and
        skipped, never fatal. `progress()` is called whenever more records were read;
        once `stopping()` is true the read stops (its reader processes too) with
        `RestoreAbandonedError`, and the partitions are left out of memory.
        """
        start = time.perf_counter()
        for partition in partitions:
            self.drop(partition)
            self.store(partition)
        said = time.monotonic()

        def read_more(records: int) -> None:  # a long restore says how far it got
            nonlocal said
            if stopping():  # raised inside the read: it closes its consumer or readers
                raise RestoreAbandonedError(
                    f"the worker is stopping: restore of partitions {list(partitions)} "
                    f"left after {records} changelog records")
            progress()
            if time.monotonic() - said >= RESTORE_LOG_S:
                said = time.monotonic()
                logger.info("restoring partitions %s: %d changelog records read in %.0fs",
                            list(partitions), records, time.perf_counter() - start)

        read = latest_read(self.bootstrap, self.group_id, partitions, security=self.security,
                           readers=self.restore_readers, progress=read_more)
        invalid = 0
        try:
            for chunk in read:
                invalid += self._load_chunk(chunk)
        except RestoreAbandonedError:
            for partition in partitions:
                self.drop(partition)
            raise
        users = sum(len(self.store(p)) for p in partitions)
        readers = read.readers
        restored = Restored(tuple(partitions), users, read.records, time.perf_counter() - start,
                            readers)
        logger.info("restored %d users (%d changelog records, %d invalid) of partitions %s "
                    "in %.2fs (%d %s)", users, read.records, read.invalid + invalid,
                    list(partitions), restored.seconds, readers,
                    "reader" if readers == 1 else "readers")
        return restored

    def _load_chunk(self, chunk: LatestChunk) -> int:
        """Apply one chunk of a restore's read; returns the values that did not decode."""
        self.store(chunk.partition).forget(chunk.deleted)
        return self._load_values(chunk.partition, chunk.values)

    def _load_values(self, partition: int, entries: dict[str, tuple[bytes, int]]) -> int:
        """Decode (value, changelog offset) per user into the partition's store, at most
        `BULK_CHUNK` at a time; returns how many values did not decode (those users are
        left out)."""
        invalid = 0
        names = list(entries)
        for first in range(0, len(names), BULK_CHUNK):
            chunk = names[first:first + BULK_CHUNK]
            values = [entries[u][0] for u in chunk]
            changelog = np.fromiter((entries[u][1] for u in chunk), dtype=np.int64,
                                    count=len(chunk))
            items, ts, offsets, ok = decode_rows(values, self.items.lookup(), self.max_len,
                                                 missing=self.items.rows_of_bytes)
            fast = np.flatnonzero(ok)
            self.store(partition).load([chunk[i] for i in fast.tolist()], items[fast],
                                       ts[fast], offsets[fast], changelog=changelog[fast])
            for i in np.flatnonzero(~ok).tolist():
                try:
                    record = decode_history(values[i])
                except ChangelogError as exc:
                    invalid += 1
                    logger.warning("skipped changelog record %s/%d/%d: %s", self.topic,
                                   partition, changelog[i], exc)
                    # Their latest record is unreadable: they start empty, whatever an
                    # earlier chunk loaded for them.
                    self.store(partition).forget([chunk[i]])
                    continue
                self._load(partition, {chunk[i]: record})
                self.store(partition).note_written(chunk[i], int(changelog[i]))
        return invalid

    def _load(self, partition: int, records: dict[str, HistoryRecord]) -> PartitionStore:
        store = self.store(partition)
        width = store.max_len
        users = list(records)
        items = np.zeros((len(users), width), dtype=np.int64)
        ts = np.zeros((len(users), width), dtype=np.int64)
        offsets = np.empty(len(users), dtype=np.int64)
        for i, user in enumerate(users):
            rec = records[user]
            rows = self.items.rows(list(rec.items))
            known = rows > 0  # 0 only past the cap on unknown items
            kept_rows = rows[known][-width:]
            kept_ts = np.asarray(rec.ts, dtype=np.int64)[known][-width:]
            if len(kept_rows):
                items[i, width - len(kept_rows):] = kept_rows
                ts[i, width - len(kept_ts):] = kept_ts
            offsets[i] = rec.offset
        store.load(users, items, ts, offsets)
        return store
