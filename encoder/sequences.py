"""Ragged item sequences to the encoder's `[B, L]` layout, for training and evaluation.

Training batches (`train.py`) and the evaluator (`evaluate.py`) start from ragged
per-user sequences and need the same conversion: keep the most recent `max_len`
items of each sequence, right-align them and left-pad with row 0, so the most
recent item sits in the last column (`pad_histories`); `concat_sequences` flattens
them for the evaluator and the baselines. Keeping that here means training and
evaluation cannot disagree on which end gets cut. The worker does not use this
module: its histories never exist as ragged sequences, but are kept in this layout
as they grow (`worker/state/partition.py` shifts a user's row and writes the new
item last), to the same convention (docs/ARCHITECTURE.md, "Conventions").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def pad_histories(seqs: Sequence[np.ndarray], max_len: int | None = None) -> np.ndarray:
    """Left-pad `seqs` with 0 into an int64 `[len(seqs), max_len]` array.

    Sequences longer than `max_len` keep their last (most recent) `max_len` items;
    `max_len=None` uses the longest sequence (at least 1 column). Only one Python
    step per sequence (a view of its tail); the copy itself is one vectorised
    scatter, so a batch of thousands of users costs milliseconds.
    """
    n = len(seqs)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    if max_len is None:
        max_len = max(int(lengths.max()) if n else 0, 1)
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    out = np.zeros((n, max_len), dtype=np.int64)
    keep = np.minimum(lengths, max_len)  # [B]
    total = int(keep.sum())
    if total == 0:
        return out
    tails = [s[len(s) - k :] for s, k in zip(seqs, keep.tolist(), strict=True)]  # views
    flat = np.concatenate(tails).astype(np.int64, copy=False)
    rows = np.repeat(np.arange(n), keep)  # [total]
    starts = np.cumsum(keep) - keep  # where each row's items begin in `flat`
    cols = np.arange(total) - np.repeat(starts, keep) + np.repeat(max_len - keep, keep)
    out[rows, cols] = flat
    return out


def concat_sequences(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(flat items, offsets[len(seqs) + 1]) of ragged sequences: seq i = flat[off[i]:off[i+1]]."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if len(seqs) else (
        np.zeros(0, dtype=np.int64)
    )
    return flat, offsets
