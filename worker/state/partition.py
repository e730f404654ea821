"""One partition's users and their rolling histories, in memory, in compact numpy form.

Each user holds the last `max_len` item rows (rows of the worker's `ItemTable`: the
serving model's vocabulary rows, then items it does not know) in one
row of a `[capacity, max_len]` int32 matrix, right-aligned and left-padded with 0:
exactly the `[B, L]` layout the encoder takes, so a batch is one fancy-index away.
Appends are vectorised over a whole poll (no Python loop per event).

Beside the items, each user keeps the events-topic offset of the last event applied.
An event at or below it is not applied again, which makes replays after a crash
idempotent. Users changed since their last changelog record (`take_dirty_of`) are
the ones whose state must go to the changelog before offsets are committed. With a
cap on users, the least recently active clean users are evicted (their state stays
in the changelog).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

# np.unique imports numpy.ma on its first call (numpy 2): 6-30 ms of the poll loop at a
# worker's first events, so the store imports it when it is imported itself.
import numpy.ma

logger = logging.getLogger(__name__)

_TAKEN = -2  # `_record_seq` of a user whose changed state awaits its batch's publish


def close_up(items: np.ndarray, *aligned: np.ndarray) -> tuple[np.ndarray, ...]:
    """Histories [n, L] after some items became 0 (dropped): the rest move right in their
    order, zeros to the left, and each of `aligned` (e.g. timestamps) moves with them,
    0 where the item is 0. The one way a history is re-packed: model swaps, restores
    and the encoder's masking of unknown items all use it."""
    order = np.argsort(items > 0, axis=1, kind="stable")  # known ones to the right
    items = np.take_along_axis(items, order, axis=1)
    out = [items]
    for values in aligned:
        values = np.take_along_axis(values, order, axis=1)
        values[items == 0] = 0
        out.append(values)
    return tuple(out)


class PartitionStore:
    """Last-`max_len` item rows, event times and applied offset per user of one partition.

    The in-memory layer of the worker's state; `durable.DurableHistories` holds one
    per owned partition and keeps it in step with the changelog.
    """

    def __init__(self, max_len: int, initial_capacity: int = 1024) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = max_len
        self._slots: dict[str, int] = {}
        self._users: list[str | None] = [None] * initial_capacity
        self._free: list[int] = list(range(initial_capacity - 1, -1, -1))
        # Item rows fit 32 bits (a vocabulary of 2^31 items is far beyond any model here):
        # half the bytes of int64, which the encoder's batch copy converts back.
        self._items = np.zeros((initial_capacity, max_len), dtype=np.int32)
        self._ts = np.zeros((initial_capacity, max_len), dtype=np.int64)
        self._lengths = np.zeros(initial_capacity, dtype=np.int64)
        self._offsets = np.full(initial_capacity, -1, dtype=np.int64)
        self._active = np.zeros(initial_capacity, dtype=np.int64)  # tick of last change
        self._dirty = np.zeros(initial_capacity, dtype=bool)
        self._changelog = np.full(initial_capacity, -1, dtype=np.int64)  # offset of last record
        # Publisher sequence number of a record sent and not yet acknowledged (-1: none);
        # while one is in flight the user is not evictable: its offset is not known yet.
        self._record_seq = np.full(initial_capacity, -1, dtype=np.int64)
        # Item rows last recommended to each user ([capacity, k], -1: none), for the live
        # quality metrics; allocated on the first recommendation (k is the worker's).
        self._recs: np.ndarray | None = None
        self._tick = 0

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._slots

    def nbytes(self) -> int:
        """Bytes of the per-slot arrays (memory beyond them: the user-id index)."""
        arrays = (self._items, self._ts, self._lengths, self._offsets, self._active,
                  self._dirty, self._changelog, self._record_seq)
        return sum(a.nbytes for a in arrays)

    def slots_for(self, user_ids: list[str]) -> np.ndarray:
        """Slot per user (a user may repeat), allocating rows for new users (growing by
        doubling). Bulk steps, not a Python loop per user: restores load 8,192 at once."""
        new = [user for user in dict.fromkeys(user_ids) if user not in self._slots]
        if new:
            self.reserve(len(new))
            taken = self._free[:-len(new) - 1:-1]  # the slots pop() would give, in order
            del self._free[-len(new):]
            self._slots.update(zip(new, taken, strict=True))
            for slot, user in zip(taken, new, strict=True):
                self._users[slot] = user
        return np.fromiter(map(self._slots.__getitem__, user_ids), dtype=np.int64,
                           count=len(user_ids))

    def reserve(self, users: int) -> None:
        """Make room for `users` more users at once (a bulk load knows how many it
        adds): one copy of the arrays instead of one per doubling."""
        if users > len(self._free):
            self._grow(users)

    def _grow(self, room: int = 1) -> None:
        """Double the capacity, or take the next power of two that leaves `room` free
        slots: capacities stay powers of two (times the initial one), as by doubling."""
        old = len(self._lengths)
        new = 2 * old
        while new - old + len(self._free) < room:
            new *= 2
        extra = new - old

        def grown(values: np.ndarray, fill: int) -> np.ndarray:
            out = np.full((new, *values.shape[1:]), fill, dtype=values.dtype)
            out[:old] = values
            return out

        self._items = grown(self._items, 0)
        self._ts = grown(self._ts, 0)
        self._lengths = grown(self._lengths, 0)
        self._offsets = grown(self._offsets, -1)
        self._active = grown(self._active, 0)
        self._dirty = grown(self._dirty, False)
        self._changelog = grown(self._changelog, -1)
        self._record_seq = grown(self._record_seq, -1)
        if self._recs is not None:
            self._recs = grown(self._recs, -1)
        self._users.extend([None] * extra)
        self._free.extend(range(new - 1, old - 1, -1))

    def append(
        self, user_ids: list[str], items: np.ndarray, ts: np.ndarray, offsets: np.ndarray,
    ) -> np.ndarray:
        """Apply events (in offset order) to their users; returns the mask of new events.

        An event at or below its user's applied offset was applied before (a replay
        after a crash) and changes nothing. Rows equal to 0 (an unknown item past the
        item table's cap) advance the offset but are not stored.
        """
        items = np.asarray(items, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.int64)
        offsets = np.asarray(offsets, dtype=np.int64)
        slots = self.slots_for(user_ids)
        fresh = offsets > self._offsets[slots]
        np.maximum.at(self._offsets, slots[fresh], offsets[fresh])
        keep = fresh & (items > 0)
        if keep.any():
            self._push(slots[keep], items[keep], ts[keep])
        return fresh

    def _push(self, slots: np.ndarray, items: np.ndarray, ts: np.ndarray) -> None:
        """Append items to slots (grouped by slot, arrival order kept), vectorised."""
        max_len = self.max_len
        if len(slots) == 1 or len(np.unique(slots)) == len(slots):
            # One event per user (the usual poll under an interleaved stream): shift
            # each row left by one and write the new item last; a few array operations.
            self._items[slots, :-1] = self._items[slots, 1:]
            self._items[slots, -1] = items
            self._ts[slots, :-1] = self._ts[slots, 1:]
            self._ts[slots, -1] = ts
            self._lengths[slots] = np.minimum(self._lengths[slots] + 1, max_len)
            self._tick += 1
            self._active[slots] = self._tick
            self._dirty[slots] = True
            return
        order = np.argsort(slots, kind="stable")
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
        self._tick += 1
        self._active[users] = self._tick
        self._dirty[users] = True

    def load(
        self, user_ids: list[str], items: np.ndarray, ts: np.ndarray, offsets: np.ndarray,
        changelog: np.ndarray | None = None,
    ) -> None:
        """Set whole histories (restore): items/ts [n, L] left-padded, offsets [n], and
        where each history sits in the changelog when known (`note_written` for many)."""
        slots = self.slots_for(user_ids)
        self._items[slots] = items
        self._ts[slots] = ts
        self._lengths[slots] = (np.asarray(items) > 0).sum(axis=1)
        self._offsets[slots] = offsets
        self._dirty[slots] = False
        if self._recs is not None:
            self._recs[slots] = -1  # what was recommended before is not known
        if changelog is not None:
            self._changelog[slots] = changelog
            self._record_seq[slots] = -1

    def remap_items(self, remap: np.ndarray, stable: int = 0) -> None:
        """Translate every stored item row through `remap` (old row -> new row; 0 drops
        the item) after a model swap; dropped items close up so histories stay
        right-aligned. Rows 1..`stable` keep their numbers (the caller knows: a new
        vocabulary that extends the old one), so only the rows above it are looked up.
        Nothing is marked dirty: the changelog holds external ids, which the swap does
        not change."""
        if remap[1:].all():  # nothing dropped (a swap keeps every item): rows stay where
            moved = self._items > stable  # they are; free slots hold 0
            if moved.any():
                self._items[moved] = remap[self._items[moved]]
        else:  # closing up is 10x the gather: 45 ms for 31,000 users
            used = np.fromiter(self._slots.values(), dtype=np.int64, count=len(self._slots))
            if len(used):
                items, ts = close_up(remap[self._items[used]], self._ts[used])
                self._items[used] = items
                self._ts[used] = ts
                self._lengths[used] = (items > 0).sum(axis=1)
        if self._recs is not None:
            recs = self._recs  # -1: none
            moved = recs > stable
            if moved.any():
                mapped = remap[recs[moved]]
                recs[moved] = np.where(mapped > 0, mapped, -1)

    def recommended(self, user_ids: list[str], rows: np.ndarray) -> None:
        """Remember the item rows just recommended to these users ([n, k], -1 = none)."""
        slots = np.array([self._slots.get(u, -1) for u in user_ids], dtype=np.int64)
        present = slots >= 0
        if self._recs is None or self._recs.shape[1] != rows.shape[1]:
            self._recs = np.full((len(self._lengths), rows.shape[1]), -1, dtype=np.int32)
        self._recs[slots[present]] = rows[present]

    def judge(self, user_ids: list[str], items: np.ndarray) -> np.ndarray:
        """Per event, the rank of its item in the last recommendation its user was sent
        (0 = first), -1 for a miss, -2 when the user has not been sent one: the
        prequential test of the live quality metrics. Call it before `append`."""
        ranks = np.full(len(user_ids), -2, dtype=np.int64)
        if self._recs is None or not len(user_ids):
            return ranks
        slots = np.array([self._slots.get(u, -1) for u in user_ids], dtype=np.int64)
        present = np.flatnonzero(slots >= 0)
        recs = self._recs[slots[present]]  # [m, k]
        sent = recs[:, 0] >= 0
        match = recs == np.asarray(items)[present][:, None]
        found = match.any(axis=1)
        ranks[present[sent]] = np.where(found, match.argmax(axis=1), -1)[sent]
        return ranks

    def take_dirty_of(self, user_ids: list[str]) -> list[str]:
        """Those of `user_ids` changed since their last record, marked clean again."""
        slots = np.array([self._slots.get(u, -1) for u in user_ids], dtype=np.int64)
        dirty = np.zeros(len(user_ids), dtype=bool)
        present = slots >= 0
        dirty[present] = self._dirty[slots[present]]
        self._dirty[slots[dirty]] = False
        return [u for u, d in zip(user_ids, dirty.tolist(), strict=True) if d]

    def take_changes(self, user_ids: list[str]
                     ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Those of `user_ids` changed since their last record and their state now
        (items [n, L], ts [n, L], offsets [n]), marked clean: the state their batch's
        recommendations answer, which goes to the changelog when the batch is published
        (`mark_sent`). Until then they are not evictable."""
        users = self.take_dirty_of(user_ids)
        items, ts, offsets = self.export(users)
        slots = np.array([self._slots[u] for u in users], dtype=np.int64)
        self._changelog[slots] = -1
        self._record_seq[slots] = _TAKEN  # an older record's acknowledgement changes nothing
        return users, items, ts, offsets

    def export(self, user_ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items [n, L], ts [n, L], offsets [n]) of stored users, for the changelog."""
        slots = np.array([self._slots[u] for u in user_ids], dtype=np.int64)
        return self._items[slots], self._ts[slots], self._offsets[slots]

    def mark_sent(self, user_ids: list[str], first_seq: int) -> None:
        """Records of these users went out, numbered `first_seq`, `first_seq + 1`, ...:
        until the last is acknowledged their changelog offset is unknown."""
        slots = np.array([self._slots[u] for u in user_ids], dtype=np.int64)
        self._changelog[slots] = -1
        self._record_seq[slots] = first_seq + np.arange(len(slots))

    def note_written(self, user_id: str, changelog_offset: int, seq: int | None = None
                     ) -> None:
        """Where the user's latest state sits in the changelog (for fetching it back).

        With `seq` (an acknowledgement) it counts only for the user's latest record:
        the acknowledgement of an older one must not make the user evictable.
        """
        slot = self._slots.get(user_id)
        if slot is None or (seq is not None and self._record_seq[slot] != seq):
            return
        self._changelog[slot] = changelog_offset
        self._record_seq[slot] = -1

    def evict(self, max_users: int) -> list[tuple[str, int]]:
        """Drop the least recently active users beyond `max_users` whose state is in the
        changelog; returns (user, changelog offset of their latest record)."""
        excess = len(self._slots) - max_users
        if excess <= 0:
            return []
        used = np.array(list(self._slots.values()), dtype=np.int64)
        candidates = used[~self._dirty[used] & (self._changelog[used] >= 0)]
        victims = candidates[np.argsort(self._active[candidates], kind="stable")[:excess]]
        gone = []
        for slot in victims.tolist():
            user = self._users[slot]
            gone.append((user, int(self._changelog[slot])))
            self._release(user, slot)  # type: ignore[arg-type]
        return gone  # type: ignore[return-value]

    def forget(self, user_ids: Iterable[str]) -> None:
        """Drop these users entirely (a changelog tombstone deleted their history);
        users not held are ignored."""
        for user in user_ids:
            slot = self._slots.get(user)
            if slot is not None:
                self._release(user, slot)

    def _release(self, user: str, slot: int) -> None:
        del self._slots[user]
        self._users[slot] = None
        self._items[slot] = 0
        self._ts[slot] = 0
        self._lengths[slot] = 0
        self._offsets[slot] = -1
        self._changelog[slot] = -1
        self._record_seq[slot] = -1
        self._dirty[slot] = False
        self._active[slot] = 0
        if self._recs is not None:
            self._recs[slot] = -1
        self._free.append(slot)

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
        start = self.max_len - int(self._lengths[slot])
        return self._items[slot, start:].copy(), self._ts[slot, start:].copy()

    def applied_offset(self, user_id: str) -> int:
        """Events-topic offset of the user's last applied event (-1 if none)."""
        slot = self._slots.get(user_id)
        return -1 if slot is None else int(self._offsets[slot])
