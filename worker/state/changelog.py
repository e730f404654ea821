"""The histories changelog: one compacted topic that makes per-user histories durable.

Every change to a user's history is written to `<group-id>-histories-changelog`
(key = user id, same partition as the user's events), so the topic compacts down to
each user's latest history. A partition assigned to a worker is restored from it
before the worker processes the partition's events.

Record value (docs/CONTRACTS.md, "Changelog record"), big-endian, versioned so the
format can evolve:

    b"SRH"  format version (uint8, = 1)  offset (int64)  count (uint16)
    count x ts (int64, epoch ms)          count x (length uint16, UTF-8 item id)

items and timestamps oldest first; offset = the events-topic offset of the last
event applied (-1 if none). Decoding checks every length against the bytes that
remain before it allocates anything, and refuses anything it does not fully
understand with `ChangelogError`: a changelog record is input like any other.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import OffsetReader, read_to_end
from streamrec.worker.errors import ChangelogError
from streamrec.worker.state.partition import close_up

logger = logging.getLogger(__name__)

MAGIC = b"SRH"
FORMAT_VERSION = 1
MAX_ITEMS = 0xFFFF  # count is a uint16
MAX_ITEM_BYTES = 0xFFFF  # each item id's length is a uint16
_HEADER = struct.Struct(">3sBqH")  # magic, version, offset, count
_LENGTH = struct.Struct(">H")


def changelog_topic(group_id: str) -> str:
    """The changelog topic of a consumer group's histories."""
    return f"{group_id}-histories-changelog"


@dataclass(frozen=True)
class HistoryRecord:
    """One user's history as stored in the changelog (oldest first)."""

    items: tuple[str, ...]  # external item ids
    ts: tuple[int, ...]  # epoch ms, one per item
    offset: int  # events-topic offset of the last event applied; -1 if none


def encode_history(record: HistoryRecord) -> bytes:
    """The changelog value of `record`; `ChangelogError` if it breaks a format limit."""
    count = len(record.items)
    if count != len(record.ts):
        raise ChangelogError(f"{count} items but {len(record.ts)} timestamps")
    if count > MAX_ITEMS:
        raise ChangelogError(f"history of {count} items: the format holds at most {MAX_ITEMS}")
    encoded: list[bytes] = []
    for item in record.items:
        try:
            data = item.encode("utf-8")
        except (AttributeError, UnicodeEncodeError) as exc:
            raise ChangelogError(f"item id {item!r} is not encodable text: {exc}") from exc
        if len(data) > MAX_ITEM_BYTES:
            raise ChangelogError(
                f"item id of {len(data)} UTF-8 bytes: the format holds at most {MAX_ITEM_BYTES}")
        encoded.append(_LENGTH.pack(len(data)))
        encoded.append(data)
    try:
        head = _HEADER.pack(MAGIC, FORMAT_VERSION, record.offset, count)
        times = struct.pack(f">{count}q", *record.ts)
    except struct.error as exc:
        raise ChangelogError(f"offset or timestamps do not fit int64: {exc}") from exc
    return b"".join([head, times, *encoded])


def item_id_table(external_ids: Sequence[str]) -> list[bytes]:
    """Per item row, its id as a history record stores it (uint16 length + UTF-8 bytes);
    built once per vocabulary so `encode_rows` never encodes an id again."""
    table = []
    for item in external_ids:
        data = item.encode("utf-8")
        if len(data) > MAX_ITEM_BYTES:
            raise ChangelogError(
                f"item id of {len(data)} UTF-8 bytes: the format holds at most {MAX_ITEM_BYTES}")
        table.append(_LENGTH.pack(len(data)) + data)
    return table


def encode_rows(items: np.ndarray, ts: np.ndarray, offsets: np.ndarray,
                id_table: Sequence[bytes]) -> list[bytes]:
    """`encode_history` for many users at once, from the worker's own layout.

    items/ts [n, L] are right-aligned and left-padded with 0 (a `PartitionStore`'s
    rows), offsets [n]; `id_table` comes from `item_id_table`. Gives exactly the
    bytes `encode_history` gives for the same histories, without a Python loop per item.
    """
    lengths = (items > 0).sum(axis=1).tolist()
    width = items.shape[1]
    times = np.ascontiguousarray(ts, dtype=">i8")
    rows = items.tolist()
    out = []
    for i, (count, offset) in enumerate(zip(lengths, offsets.tolist(), strict=True)):
        start = width - count
        out.append(b"".join([
            _HEADER.pack(MAGIC, FORMAT_VERSION, offset, count), times[i, start:].tobytes(),
            *[id_table[r] for r in rows[i][start:]]]))
    return out


def decode_history(value: bytes) -> HistoryRecord:
    """The record in a changelog value; `ChangelogError` for anything malformed."""
    view = bytes(value)
    size = len(view)
    if size < _HEADER.size:
        raise ChangelogError(f"record of {size} bytes is shorter than the {_HEADER.size}-byte "
                             "header")
    magic, version, offset, count = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise ChangelogError(f"not a history record: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise ChangelogError(f"history format version {version}; this streamrec reads "
                             f"version {FORMAT_VERSION}: upgrade it")
    if offset < -1:
        raise ChangelogError(f"offset {offset} is negative")
    pos = _HEADER.size
    if size - pos < 8 * count:
        raise ChangelogError(f"truncated: {count} timestamps need {8 * count} bytes, "
                             f"{size - pos} remain")
    ts = struct.unpack_from(f">{count}q", view, pos)
    pos += 8 * count
    items: list[str] = []
    for i in range(count):
        if size - pos < _LENGTH.size:
            raise ChangelogError(f"truncated: item {i} of {count} has no length")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += _LENGTH.size
        if size - pos < length:
            raise ChangelogError(f"truncated: item {i} needs {length} bytes, {size - pos} remain")
        try:
            items.append(view[pos : pos + length].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ChangelogError(f"item {i} is not UTF-8: {exc.reason}") from exc
        pos += length
    if pos != size:
        raise ChangelogError(f"{size - pos} trailing bytes after {count} items")
    return HistoryRecord(items=tuple(items), ts=ts, offset=offset)


# -- bulk decoding for restores --------------------------------------------------------

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's finaliser
_MIX_2 = np.uint64(0x94D049BB133111EB)
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)  # n low bytes
BULK_MAX_ITEM_BYTES = 64  # longer item ids take the per-record path
BULK_MAX_COUNT = 256  # so do longer histories (the worker writes at most the model's L)
BULK_CHUNK = 8192  # values decoded per call: bounds the transient [chunk, count] arrays
_HEADER_BYTES = _HEADER.size  # 14


def _words(buf: np.ndarray, dtype: str) -> np.ndarray:
    """buf read as a `dtype` word at every byte position: an unaligned view, no copy,
    so a gather at any offsets reads whole words in one step."""
    size = np.dtype(dtype).itemsize
    return np.ndarray((max(0, len(buf) - size + 1),), dtype=dtype, buffer=buf, strides=(1,))


def _hash_segments(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each byte segment buf[start : start + length], with the length
    mixed in first: one vectorised step per 8-byte word position (FNV-1a's step taken
    over little-endian words, zero-padded past the segment's end), not per segment or
    byte, then splitmix64's finaliser so every input bit reaches every output bit. Two
    segments of at most 8 bytes and the same length never collide: each step is a
    bijection of the word."""
    h = np.full(len(starts), _FNV_OFFSET, dtype=np.uint64)
    h = (h ^ lengths.astype(np.uint64)) * _FNV_PRIME
    longest = int(lengths.max()) if len(lengths) else 0
    if longest:
        if len(buf) < int((starts + lengths).max()) + 8:
            buf = np.concatenate([buf, np.zeros(8, dtype=np.uint8)])  # room for a word
        words = _words(buf, "<u8")
    for k in range(0, longest, 8):
        live = k < lengths
        word = words[np.where(live, starts + k, 0)] & _LOW_BYTES[np.clip(lengths - k, 0, 8)]
        h = np.where(live, (h ^ word) * _FNV_PRIME, h)
    h ^= h >> np.uint64(30)
    h *= _MIX_1
    h ^= h >> np.uint64(27)
    h *= _MIX_2
    return h ^ (h >> np.uint64(31))


class ItemRows:
    """Item id bytes -> vocabulary row, looked up for millions of ids at once.

    Restores map every stored item id back to the serving model's row; a Python dict
    lookup per id (50 per user) is most of a restore's time. Ids are hashed in bulk
    (`_hash_segments`) and found by `searchsorted` in the vocabulary's sorted hashes.
    A 64-bit hash collision between a stored id and a vocabulary id (about
    ids x vocabulary / 2^64) would map the id to the wrong item.
    """

    def __init__(self, external_ids: Sequence[str]) -> None:
        encoded = [item.encode("utf-8") for item in external_ids]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        starts = np.zeros(len(encoded), dtype=np.int64)
        starts[1:] = np.cumsum(lengths)[:-1]
        buf = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
        hashes = _hash_segments(buf, starts, lengths)
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._rows = (order + 1).astype(np.int64)  # row 0 is padding

    def rows(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Rows of the ids at buf[start : start + length] (0: not in the vocabulary)."""
        if not len(starts) or not len(self._hashes):
            return np.zeros(len(starts), dtype=np.int64)
        h = _hash_segments(buf, starts, lengths)
        pos = np.minimum(np.searchsorted(self._hashes, h), len(self._hashes) - 1)
        return np.where(self._hashes[pos] == h, self._rows[pos], 0)


def decode_rows(
    values: Sequence[bytes], lookup: ItemRows, width: int,
    missing: Callable[[list[bytes]], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Many changelog values at once, straight into a `PartitionStore`'s layout.

    Returns (items [n, width] rows, ts [n, width], offsets [n], ok [n]): the newest
    `width` items the vocabulary knows (unknown ones dropped first, as `decode_history`
    + `ItemVocab.rows` would), right-aligned and left-padded with 0. With `missing`, ids
    `lookup` lacks are handed to it as bytes, all at once, and it gives their rows (0:
    drop the item, -1: not UTF-8, the record is refused): the worker's `ItemTable` adds
    the items its model does not know there. `ok` is False for
    a value this fast path does not take: malformed (same checks as `decode_history`,
    bar UTF-8 validity, which cannot matter: only ids equal to a vocabulary id map to
    a row), or holding an item id over `BULK_MAX_ITEM_BYTES` or more than
    `BULK_MAX_COUNT` items. The caller decodes those one by one with
    `decode_history`, which names what is wrong. Memory is about 50 bytes per value
    per stored item: pass at most `BULK_CHUNK` values.
    """
    n = len(values)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=n)
    starts = np.zeros(n, dtype=np.int64)
    starts[1:] = np.cumsum(lens)[:-1]
    ends = starts + lens
    buf = np.frombuffer(b"".join(values) + bytes(_HEADER_BYTES), dtype=np.uint8)
    ok = lens >= _HEADER_BYTES
    s = np.where(ok, starts, 0)
    ok &= ((buf[s] == MAGIC[0]) & (buf[s + 1] == MAGIC[1]) & (buf[s + 2] == MAGIC[2])
           & (buf[s + 3] == FORMAT_VERSION))
    offsets = _big_endian(buf, s + 4, 8).view(np.int64)
    count = _big_endian(buf, s + 12, 2).astype(np.int64)
    ok &= (offsets >= -1) & (count <= BULK_MAX_COUNT)
    ts_start = s + _HEADER_BYTES
    pos = ts_start + 8 * count
    ok &= pos <= ends
    count = np.where(ok, count, 0)
    most = int(count.max()) if n else 0
    item_start = np.zeros((n, most), dtype=np.int64)
    item_len = np.zeros((n, most), dtype=np.int64)
    for j in range(most):
        live = ok & (j < count)
        ok &= ~live | (pos + 2 <= ends)
        live &= ok
        length = np.where(live, _big_endian(buf, np.where(live, pos, 0), 2).astype(np.int64),
                          0)
        item_start[:, j] = pos + 2
        item_len[:, j] = length
        pos = np.where(live, pos + 2 + length, pos)
        ok &= pos <= ends
    ok &= pos == ends
    present = (np.arange(most)[None, :] < count[:, None]) & ok[:, None]
    ok &= ~(present & (item_len > BULK_MAX_ITEM_BYTES)).any(axis=1)
    present &= ok[:, None]
    rows = np.zeros((n, most), dtype=np.int64)
    rows[present] = lookup.rows(buf, item_start[present], item_len[present])
    if missing is not None and (miss := present & (rows == 0)).any():
        ids = [buf[a:a + size].tobytes() for a, size in
               zip(item_start[miss].tolist(), item_len[miss].tolist(), strict=True)]
        rows[miss] = missing(ids)
        ok &= ~(rows < 0).any(axis=1)
        rows[rows < 0] = 0
    ts_all = np.zeros((n, most), dtype=np.int64)
    ts_pos = ts_start[:, None] + 8 * np.arange(most)[None, :]
    ts_all[present] = _big_endian(buf, ts_pos[present], 8).view(np.int64)
    # Known items keep their order and move right; unknown ones (0) move left.
    rows, ts_all = close_up(rows, ts_all)
    items = np.zeros((n, width), dtype=np.int64)
    ts = np.zeros((n, width), dtype=np.int64)
    take = min(width, most)
    if take:
        items[:, width - take:] = rows[:, most - take:]
        ts[:, width - take:] = ts_all[:, most - take:]
    return items, ts, offsets, ok


def _big_endian(buf: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """The unsigned big-endian integers of `size` bytes (2 or 8) at positions `at` (as
    uint64, reinterpreted by the caller when signed)."""
    return _words(buf, f">u{size}")[at].astype(np.uint64)


@dataclass(frozen=True)
class RestoreStats:
    """What one restore read: for logs, metrics and tests."""

    records: int  # changelog records read (tombstones and bad ones included)
    users: int  # users restored (after compaction of the read)
    tombstones: int  # records with no value: the user's history was deleted
    invalid: int  # records whose key or value could not be decoded (skipped)
    seconds: float  # wall time of the read


def header_problem(value: bytes) -> str | None:
    """What is wrong with a value's fixed part (magic, version, room for its timestamps),
    or None: the check a restore can afford per record while it reads."""
    if len(value) < _HEADER_BYTES:
        return f"record of {len(value)} bytes is shorter than the {_HEADER_BYTES}-byte header"
    magic, version, offset, count = _HEADER.unpack_from(value)
    if magic != MAGIC:
        return f"not a history record: magic {magic!r}, expected {MAGIC!r}"
    if version != FORMAT_VERSION:
        return f"history format version {version}; this streamrec reads version {FORMAT_VERSION}"
    if offset < -1 or len(value) < _HEADER_BYTES + 8 * count:
        return "truncated or corrupt header"
    return None


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
