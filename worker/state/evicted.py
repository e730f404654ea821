"""Where each user evicted by the cap left their state: a compact index, ~16 bytes a user.

With `--max-users`, the least recently active users leave memory; their state stays
in the changelog at a known offset, and a returning user is read back from there.
Every user a worker ever evicted needs that offset, so with millions of users the
index itself must be small: a Python dict of `str -> int` costs well over 100 bytes
an entry. Here an entry is a 64-bit key (Python's `hash()` of the user id; the index
lives in one process, so the per-process hash seed does not matter) and a 64-bit
offset in two sorted numpy arrays, looked up in bulk with `searchsorted`. New
entries gather in a small dict (at most 1/32 of the index, so ~3 more bytes a
user) and are merged in when it fills; popped entries become tombstones until the
next merge drops them.

A hash collision between two of a partition's users (about n^2 / 2^64: 3e-8 for a
million users) would hand one user the other's offset: the reader checks the
record's key (`changelog_read.fetch_histories`), so nobody gets another user's history,
but the evicted one of the two would start over empty.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

GONE = -1  # tombstone offset
BUFFER_ENTRY_BYTES = 105  # a dict entry of two ints, measured with tracemalloc (CPython 3.11)


class EvictedIndex:
    """user id -> changelog offset of the state they were evicted with."""

    def __init__(self, buffer_size: int = 4096) -> None:
        self.buffer_size = buffer_size
        self._keys = np.zeros(0, dtype=np.int64)  # sorted
        self._offsets = np.zeros(0, dtype=np.int64)  # GONE for popped entries
        self._live = 0  # entries of the arrays that are not tombstones
        self._buffer: dict[int, int] = {}

    def __len__(self) -> int:
        return self._live + len(self._buffer)

    def nbytes(self) -> int:
        """Bytes held: the arrays (tombstones included) plus an estimate of the buffer."""
        return self._keys.nbytes + self._offsets.nbytes + BUFFER_ENTRY_BYTES * len(self._buffer)

    def add(self, entries: Iterable[tuple[str, int]]) -> None:
        """Remember (user, changelog offset) pairs of users just evicted."""
        for user, offset in entries:
            self._buffer[hash(user)] = offset
        if len(self._buffer) >= max(self.buffer_size, self._live // 32):
            self._merge()

    def pop(self, users: Iterable[str]) -> dict[str, int]:
        """The changelog offsets of those `users` that were evicted, removed from the index."""
        found: dict[str, int] = {}
        rest: list[str] = []
        for user in set(users):
            offset = self._buffer.pop(hash(user), None)
            if offset is None:
                rest.append(user)
            else:
                found[user] = offset
        if rest and self._live:
            keys = np.fromiter((hash(u) for u in rest), dtype=np.int64, count=len(rest))
            pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            hit = (self._keys[pos] == keys) & (self._offsets[pos] != GONE)
            hit_pos = pos[hit]
            for user, offset in zip(np.asarray(rest, dtype=object)[hit].tolist(),
                                    self._offsets[hit_pos].tolist(), strict=True):
                found[user] = offset
            self._offsets[hit_pos] = GONE
            self._live -= int(hit.sum())
        return found

    def _merge(self) -> None:
        """Fold the buffer into the sorted arrays, dropping tombstones: O(n) copies."""
        keep = self._offsets != GONE
        keys, offsets = self._keys[keep], self._offsets[keep]
        new_keys = np.fromiter(self._buffer.keys(), dtype=np.int64, count=len(self._buffer))
        new_offsets = np.fromiter(self._buffer.values(), dtype=np.int64, count=len(self._buffer))
        order = np.argsort(new_keys)
        new_keys, new_offsets = new_keys[order], new_offsets[order]
        at = np.searchsorted(keys, new_keys)
        self._keys = np.insert(keys, at, new_keys)
        self._offsets = np.insert(offsets, at, new_offsets)
        self._live = len(self._keys)
        self._buffer.clear()
