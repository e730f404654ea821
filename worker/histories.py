"""Per-user rolling histories in compact numpy form.

Each user holds the last `max_len` item rows (the encoder's vocabulary rows) in one
row of a `[capacity, max_len]` int64 matrix, right-aligned and left-padded with 0:
exactly the `[B, L]` layout the encoder takes, so a batch is one fancy-index away.
Appends are vectorised over a whole poll (no Python loop per event). One store per
events-topic partition, so a partition's state can be dropped (or, later, restored)
on its own when the consumer group moves it.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


class HistoryStore:
    """Last-`max_len` item rows and event times per user of one partition."""

    def __init__(self, max_len: int, initial_capacity: int = 1024) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = max_len
        self._slots: dict[str, int] = {}
        self._items = np.zeros((initial_capacity, max_len), dtype=np.int64)
        self._ts = np.zeros((initial_capacity, max_len), dtype=np.int64)
        self._lengths = np.zeros(initial_capacity, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._slots

    def slots_for(self, user_ids: list[str]) -> np.ndarray:
        """Slot per user, allocating rows for new users (growing by doubling)."""
        slots = np.empty(len(user_ids), dtype=np.int64)
        for i, user in enumerate(user_ids):
            slot = self._slots.get(user)
            if slot is None:
                slot = len(self._slots)
                if slot >= len(self._lengths):
                    self._grow()
                self._slots[user] = slot
            slots[i] = slot
        return slots

    def _grow(self) -> None:
        new = 2 * len(self._lengths)
        self._items = np.resize(self._items, (new, self.max_len))
        self._ts = np.resize(self._ts, (new, self.max_len))
        self._lengths = np.resize(self._lengths, new)
        self._items[new // 2 :] = 0
        self._ts[new // 2 :] = 0
        self._lengths[new // 2 :] = 0

    def append(self, user_ids: list[str], items: np.ndarray, ts: np.ndarray) -> None:
        """Append events (in arrival order) to their users' histories.

        Rows equal to 0 (items the model does not know) are skipped: they cannot be
        encoded, and keeping them would push known items out of the window.
        """
        items = np.asarray(items, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.int64)
        slots = self.slots_for(user_ids)
        known = items > 0
        if not known.all():
            slots, items, ts = slots[known], items[known], ts[known]
        if len(slots) == 0:
            return
        max_len = self.max_len
        order = np.argsort(slots, kind="stable")  # group by user, keep arrival order
        s, x, t = slots[order], items[order], ts[order]
        users, first, counts = np.unique(s, return_index=True, return_counts=True)
        rank = np.arange(len(s)) - np.repeat(first, counts)  # 0..c-1 within each user
        group = np.repeat(np.arange(len(users)), counts)
        width = max_len + int(counts.max())
        # [U, L + max c]: old rows, then each user's new items after them; the new
        # window of user u is columns counts[u] .. counts[u] + L.
        ext_items = np.zeros((len(users), width), dtype=np.int64)
        ext_ts = np.zeros((len(users), width), dtype=np.int64)
        ext_items[:, :max_len] = self._items[users]
        ext_ts[:, :max_len] = self._ts[users]
        ext_items[group, max_len + rank] = x
        ext_ts[group, max_len + rank] = t
        window = counts[:, None] + np.arange(max_len)[None, :]  # [U, L]
        self._items[users] = np.take_along_axis(ext_items, window, axis=1)
        self._ts[users] = np.take_along_axis(ext_ts, window, axis=1)
        self._lengths[users] = np.minimum(self._lengths[users] + counts, max_len)

    def rows(self, user_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(items [B, L] left-padded, lengths [B]) for known users; unknown users are empty."""
        idx = np.array([self._slots.get(u, -1) for u in user_ids], dtype=np.int64)
        present = idx >= 0
        items = np.zeros((len(user_ids), self.max_len), dtype=np.int64)
        lengths = np.zeros(len(user_ids), dtype=np.int64)
        items[present] = self._items[idx[present]]
        lengths[present] = self._lengths[idx[present]]
        return items, lengths

    def history(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(items, timestamps) of one user, oldest first, without padding."""
        slot = self._slots.get(user_id)
        if slot is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        n = int(self._lengths[slot])
        start = self.max_len - n
        return self._items[slot, start:].copy(), self._ts[slot, start:].copy()


class PartitionedHistories:
    """One `HistoryStore` per events-topic partition."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self._stores: dict[int, HistoryStore] = {}

    def store(self, partition: int) -> HistoryStore:
        """The partition's store, created empty on first use."""
        store = self._stores.get(partition)
        if store is None:
            store = self._stores[partition] = HistoryStore(self.max_len)
        return store

    def drop(self, partition: int) -> int:
        """Forget a partition's users (revoked partition); returns how many were dropped."""
        store = self._stores.pop(partition, None)
        return len(store) if store is not None else 0

    def num_users(self) -> int:
        """Users held in memory across all partitions."""
        return sum(len(s) for s in self._stores.values())

    def partitions(self) -> list[int]:
        """Partitions that currently hold a store."""
        return sorted(self._stores)
