"""Bulk decoding of changelog values, for restores.

A restore decodes millions of records; `decode_history`'s Python loop per record
(and a dict lookup per item id) would be most of its time. `decode_rows` decodes a
chunk of values in one numpy pass, straight into a `PartitionStore`'s layout, with
item ids mapped to vocabulary rows by hash (`ItemRows`). Values it does not take
are left to `changelog.decode_history`, which names what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from streamrec.worker.state.changelog import FORMAT_VERSION, HEADER_BYTES, MAGIC
from streamrec.worker.state.partition import close_up

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's finaliser
_MIX_2 = np.uint64(0x94D049BB133111EB)
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)  # n low bytes
BULK_MAX_ITEM_BYTES = 64  # longer item ids take the per-record path
BULK_MAX_COUNT = 256  # so do longer histories (the worker writes at most the model's L)
BULK_CHUNK = 8192  # values decoded per call: bounds the transient [chunk, count] arrays


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
    buf = np.frombuffer(b"".join(values) + bytes(HEADER_BYTES), dtype=np.uint8)
    ok = lens >= HEADER_BYTES
    s = np.where(ok, starts, 0)
    ok &= ((buf[s] == MAGIC[0]) & (buf[s + 1] == MAGIC[1]) & (buf[s + 2] == MAGIC[2])
           & (buf[s + 3] == FORMAT_VERSION))
    offsets = _big_endian(buf, s + 4, 8).view(np.int64)
    count = _big_endian(buf, s + 12, 2).astype(np.int64)
    ok &= (offsets >= -1) & (count <= BULK_MAX_COUNT)
    ts_start = s + HEADER_BYTES
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

