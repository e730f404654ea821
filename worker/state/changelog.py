"""The histories changelog: one compacted topic that makes per-user histories durable.

Every change to a user's history is written to `<group-id>-histories-changelog`
(key = user id, same partition as the user's events), so the topic compacts down to
each user's latest history. A partition assigned to a worker is restored from it
before the worker processes the partition's events.

This module is the record format: encoding, the per-record decoder and the header
check. `changelog_bulk.py` decodes many records at once for restores;
`changelog_read.py` reads the latest record per user from the topic (restore, and
fetch of evicted users).

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

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.common.pacing import pause
from streamrec.worker.errors import ChangelogError

MAGIC = b"SRH"
FORMAT_VERSION = 1
MAX_ITEMS = 0xFFFF  # count is a uint16
MAX_ITEM_BYTES = 0xFFFF  # each item id's length is a uint16
_HEADER = struct.Struct(">3sBqH")  # magic, version, offset, count
_LENGTH = struct.Struct(">H")
HEADER_BYTES = _HEADER.size  # 14


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
    for count, item in enumerate(external_ids, start=1):
        data = item.encode("utf-8")
        if len(data) > MAX_ITEM_BYTES:
            raise ChangelogError(
                f"item id of {len(data)} UTF-8 bytes: the format holds at most {MAX_ITEM_BYTES}")
        table.append(_LENGTH.pack(len(data)) + data)
        if not count % 10_000:
            pause()  # a paced loader builds a new version's table beside the poll loop
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


def header_problem(value: bytes) -> str | None:
    """What is wrong with a value's fixed part (magic, version, room for its timestamps),
    or None: the check a restore can afford per record while it reads."""
    if len(value) < HEADER_BYTES:
        return f"record of {len(value)} bytes is shorter than the {HEADER_BYTES}-byte header"
    magic, version, offset, count = _HEADER.unpack_from(value)
    if magic != MAGIC:
        return f"not a history record: magic {magic!r}, expected {MAGIC!r}"
    if version != FORMAT_VERSION:
        return f"history format version {version}; this streamrec reads version {FORMAT_VERSION}"
    if offset < -1 or len(value) < HEADER_BYTES + 8 * count:
        return "truncated or corrupt header"
    return None
