"""The two baselines every model is reported beside: most-popular and item transitions.

A sequential model earns its keep only by beating these on the same split, so
both implement the evaluator's `Scorer` protocol and go through the same code.
`MostPopular` scores items by training-interaction count. `ItemTransition`
scores the next item by how often it followed the user's last few items in the
training sequences (a first-order Markov chain with a decayed look-back), backing
off to popularity with a tiny weight so items it knows nothing about are ordered
by popularity instead of tying. The transition table is a CSR matrix built with
numpy (scipy is not a dependency): games.txt fits in a few MB and builds in well
under a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.common.errors import ConfigError
from streamrec.encoder.sequences import concat_sequences

logger = logging.getLogger(__name__)


class MostPopular:
    """Every user gets the same scores: the items' training counts."""

    def __init__(self, item_counts: np.ndarray) -> None:
        counts = np.asarray(item_counts, dtype=np.float32).ravel()
        self._counts = counts.copy()
        self._counts[0] = 0.0

    @classmethod
    def fit(cls, sequences: Sequence[np.ndarray], num_items: int) -> MostPopular:
        """Counts over `sequences` (rows 1..num_items)."""
        flat, _ = concat_sequences(sequences)
        return cls(np.bincount(flat, minlength=num_items + 1).astype(np.float32))

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, V + 1]`: the popularity vector repeated per row."""
        return np.tile(self._counts, (len(histories), 1))


@dataclass(frozen=True)
class TransitionConfig:
    """How `ItemTransition` counts and looks back."""

    steps: int = 1  # how many of the most recent history items vote (1 = last item only)
    decay: float = 0.5  # the i-th most recent item votes with weight decay**i
    window: int = 1  # also count items up to `window` positions later (weight 1 / distance)
    normalize: bool = True  # vote with P(next | item) instead of raw counts
    # Back-off: + weight * count / max count. Small enough not to override an observed
    # transition in practice, large enough to survive float32 rounding next to one.
    popularity_weight: float = 1e-4

    def __post_init__(self) -> None:
        if self.steps < 1 or self.window < 1 or not 0.0 < self.decay <= 1.0:
            raise ConfigError(
                f"transition baseline needs steps >= 1, window >= 1, 0 < decay <= 1; got {self}"
            )


class ItemTransition:
    """Next-item scores from item -> following-item counts in the training sequences."""

    def __init__(
        self,
        indptr: np.ndarray,
        next_items: np.ndarray,
        weights: np.ndarray,
        popularity: np.ndarray,
        config: TransitionConfig,
    ) -> None:
        self.indptr = indptr  # int64 [V + 2]: row a's transitions are [indptr[a], indptr[a+1])
        self.next_items = next_items  # int64 [nnz]
        self.weights = weights  # float32 [nnz]
        self.config = config
        top = float(popularity.max()) if popularity.size else 0.0
        self._backoff = (
            config.popularity_weight * popularity / top if top > 0 else np.zeros_like(popularity)
        ).astype(np.float32)  # [V + 1]
        self._backoff[0] = 0.0

    @property
    def num_items(self) -> int:
        """V."""
        return len(self.indptr) - 2

    @classmethod
    def fit(
        cls,
        sequences: Sequence[np.ndarray],
        num_items: int,
        config: TransitionConfig | None = None,
    ) -> ItemTransition:
        """Count transitions within each sequence (never across users)."""
        config = config or TransitionConfig()
        started = time.perf_counter()
        flat, offsets = concat_sequences(sequences)
        owner = np.repeat(np.arange(len(sequences)), np.diff(offsets))  # user of each position
        width = np.int64(num_items + 1)
        keys, votes = [], []
        for distance in range(1, config.window + 1):
            same_user = owner[:-distance] == owner[distance:]
            keys.append(flat[:-distance][same_user] * width + flat[distance:][same_user])
            votes.append(np.full(int(same_user.sum()), 1.0 / distance))
        all_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        pairs, inverse = np.unique(all_keys, return_inverse=True)  # sorted by (src, dst)
        counts = np.bincount(inverse, weights=np.concatenate(votes) if votes else None,
                             minlength=len(pairs))
        src, dst = pairs // width, pairs % width
        if config.normalize and len(pairs):
            counts = counts / np.bincount(src, weights=counts, minlength=num_items + 1)[src]
        indptr = np.zeros(num_items + 2, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=num_items + 1), out=indptr[1:])
        popularity = np.bincount(flat, minlength=num_items + 1).astype(np.float64)
        model = cls(indptr, dst.astype(np.int64), counts.astype(np.float32), popularity, config)
        logger.info(
            "item-transition baseline: %d distinct transitions over %d items in %.2fs",
            len(pairs), num_items, time.perf_counter() - started,
        )
        return model

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, V + 1]`: decayed sum of the last items' transition rows + back-off."""
        batch, length = histories.shape
        out = np.tile(self._backoff, (batch, 1))
        for back in range(min(self.config.steps, length)):
            items = histories[:, length - 1 - back]  # [B]; 0 = padding has no transitions
            start, stop = self.indptr[items], self.indptr[items + 1]
            sizes = np.where(items > 0, stop - start, 0)
            total = int(sizes.sum())
            if total == 0:
                continue
            rows = np.repeat(np.arange(batch), sizes)
            first = np.repeat(start - (np.cumsum(sizes) - sizes), sizes)
            pos = np.arange(total) + first  # CSR positions of every (row, transition)
            vote = np.float32(self.config.decay**back)
            # A CSR row has each next item once, so (row, item) pairs are unique: += is safe.
            out[rows, self.next_items[pos]] += vote * self.weights[pos]
        return out


# The last-item chain is the textbook baseline (the reference figure); the
# wider look-back is the stronger one a model has to beat.
TRANSITION = TransitionConfig(steps=1, window=1)
COOCCURRENCE = TransitionConfig(steps=3, decay=0.5, window=3)


def fit_baselines(
    train_sequences: Sequence[np.ndarray], num_items: int
) -> dict[str, MostPopular | ItemTransition]:
    """Most-popular, last-item transition and windowed co-occurrence, by table name."""
    return {
        "most-popular": MostPopular.fit(train_sequences, num_items),
        "transition": ItemTransition.fit(train_sequences, num_items, TRANSITION),
        "co-occurrence": ItemTransition.fit(train_sequences, num_items, COOCCURRENCE),
    }
