"""Deterministic uniform negatives for the sampled-100 evaluation protocol.

The SASRec paper ranks each test item against 100 items drawn uniformly from the
items the user never interacted with. To make that number reproducible, the
draws here are a pure function of (seed, user, draw number) through a
counter-based hash (splitmix64) rather than a stateful generator: the negatives
of a user do not change with the batch size, the order of users, or whether the
evaluation ran on a subset. Sampling is without replacement and vectorised over
a batch; only users who have seen most of the catalogue take a slower exact path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_EXACT_STREAM = np.uint64(1 << 31)  # counter bit that separates the fallback's keys


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def sample_negatives(
    seen: Sequence[np.ndarray],
    case_ids: np.ndarray,
    num_items: int,
    num_negatives: int,
    seed: int,
) -> np.ndarray:
    """int64 `[B, num_negatives]` distinct rows in 1..V that user b never saw.

    `seen[b]` holds every row user b interacted with; `case_ids[b]` names the user
    (its index in the data set) so its draws are the same in any batch. A user with
    fewer than `num_negatives` unseen items gets all of them, and 0 (padding) fills
    the rest of the row: callers must treat row 0 as "no negative".
    """
    batch = len(seen)
    out = np.zeros((batch, num_negatives), dtype=np.int64)
    if batch == 0 or num_negatives == 0:
        return out
    seen_mask = _seen_mask(seen, num_items)  # [B, V + 1] bool, column 0 always True
    key = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    ids = np.asarray(case_ids, dtype=np.uint64)[:, None] << np.uint64(32)  # [B, 1]
    draws = 2 * num_negatives + 16  # enough for almost every user in one round
    counter = ids | np.arange(draws, dtype=np.uint64)[None, :]  # [B, K]
    cand = (splitmix64(counter ^ key) % np.uint64(num_items)).astype(np.int64) + 1  # [B, K]
    valid = ~np.take_along_axis(seen_mask, cand, axis=1) & ~_later_duplicates(cand)
    filled = np.cumsum(valid, axis=1)  # [B, K]
    enough = filled[:, -1] >= num_negatives
    take = valid & (filled <= num_negatives)
    out[enough] = cand[enough][take[enough]].reshape(-1, num_negatives)
    for b in np.flatnonzero(~enough).tolist():
        out[b] = _exact(seen_mask[b], int(case_ids[b]), num_negatives, key)
    return out


def _seen_mask(seen: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    mask = np.zeros((len(seen), num_items + 1), dtype=bool)
    lengths = np.fromiter((len(s) for s in seen), dtype=np.int64, count=len(seen))
    if lengths.sum():
        mask[np.repeat(np.arange(len(seen)), lengths), np.concatenate(seen)] = True
    mask[:, 0] = True
    return mask


def _later_duplicates(cand: np.ndarray) -> np.ndarray:
    """True where a row repeats a value drawn earlier in the same row."""
    order = np.argsort(cand, axis=1, kind="stable")  # equal values keep draw order
    ordered = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros(cand.shape, dtype=bool)
    dup_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    dup = np.empty_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def _exact(seen_row: np.ndarray, case_id: int, num_negatives: int, key: np.ndarray) -> np.ndarray:
    """Uniform without replacement over all unseen items: the ones with the smallest hash keys."""
    out = np.zeros(num_negatives, dtype=np.int64)
    unseen = np.flatnonzero(~seen_row)
    if len(unseen) <= num_negatives:
        out[: len(unseen)] = unseen
        return out
    counter = (np.uint64(case_id) << np.uint64(32)) | _EXACT_STREAM
    keys = splitmix64((counter + unseen.astype(np.uint64)) ^ key)
    out[:] = unseen[np.argpartition(keys, num_negatives - 1)[:num_negatives]]
    return out
