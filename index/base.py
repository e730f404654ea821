"""The shape every item index shares, and the one exclusion filter they all use.

An index is built from the item embedding table `[V + 1, d]` (row 0 is padding and
is never returned). A backend that scores every item (torch) masks the excluded
rows before its top-k; otherwise `search` asks the backend for `k + m` candidates,
where `m` is the longest exclusion list in the batch, then removes excluded rows in
one vectorised pass. Either way every user gets `k` items (when the catalogue has
them) and the same ones.

Items retired from the catalogue (the worker's items topic) are excluded from every
query at once: `set_unavailable` takes their rows as one global mask, never as a
[B, m] exclusion matrix per batch (a shop that retires 10% of a million items would
make that 100,000 wide). Each backend applies it natively where it can (torch sets
their scores to -inf before its top-k; FAISS CPU indexes skip them through an
`IDSelectorBitmap`), and the shared filter drops them in any case; a backend without
a native mask (FAISS PQ codes, FAISS on a GPU) fetches `k + m + len(unavailable)`
candidates instead, so even then every user still gets `k` items.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamrec.index.errors import IndexBuildError

if TYPE_CHECKING:
    from streamrec.index.truth import RecallTruth

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """Top-k rows and scores per query, best first; row -1 / score -inf pad short rows."""

    rows: np.ndarray  # [B, k] int64
    scores: np.ndarray  # [B, k] float32


@dataclass(frozen=True)
class Unavailable:
    """Rows no search returns, in the forms the backends use; replaced whole, never changed."""

    rows: np.ndarray  # sorted distinct rows in 1..V, int64
    mask: np.ndarray  # [V + 1] bool, True = never returned
    native: object = None  # the backend's own form (a tensor, a FAISS selector); None: none


NONE_UNAVAILABLE = Unavailable(np.zeros(0, np.int64), np.zeros(0, bool))


class ItemIndex(ABC):
    """Inner-product search over an item table, with per-query exclusions."""

    name: str = "abstract"
    approximate = False  # True: may miss some of the exact top k (its recall is measured)
    stored = False  # True: costly to build, kept with the checkpoint (index/store.py)
    truth: RecallTruth | None = None  # read with a stored index: its sample's exact answer

    def __init__(self, embeddings: np.ndarray) -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] < 2:
            raise IndexBuildError(
                f"item table must be [V + 1, d] with at least one item, got {embeddings.shape}"
            )
        self.num_rows, self.dim = int(embeddings.shape[0]), int(embeddings.shape[1])
        self.unavailable = NONE_UNAVAILABLE

    def set_unavailable(self, unavailable: np.ndarray) -> None:
        """Never return these rows from the next search on, for every query, until the
        next call replaces them: a bool mask [V + 1] (True = unavailable), or the rows
        themselves (row 0 and rows outside the table are ignored).

        Not to be called while a search runs: the worker calls it between batches,
        when the model stage is empty. O(V) once per call; what it costs each query
        is the backend's mask (torch_index.py, faiss_index.py say what they measured).
        """
        given = np.asarray(unavailable)
        if given.dtype == bool:
            if given.shape != (self.num_rows,):
                raise ValueError(f"unavailable mask must be [{self.num_rows}], got {given.shape}")
            mask = given.copy()
            mask[0] = False
            rows = np.flatnonzero(mask)
        else:
            rows = np.unique(given.astype(np.int64, copy=False))
            rows = rows[(rows > 0) & (rows < self.num_rows)]
            mask = np.zeros(self.num_rows, dtype=bool)
            mask[rows] = True
        if not len(rows):
            self.unavailable = NONE_UNAVAILABLE
            return
        self.unavailable = Unavailable(rows, mask, self._native_unavailable(rows, mask))

    def describe(self) -> str:
        """The parameters that matter for this index, as a short string (none here)."""
        return ""

    def widen(self) -> bool:
        """Search more of the index from now on, for a higher recall at some speed
        (`recall.measure` with a target); False when this index cannot (exact, or its
        breadth was asked for): the default."""
        return False

    def narrow(self) -> None:
        """Undo the last `widen` (one that bought too little recall for its cost); an
        index that never widens has nothing to undo."""
        return None

    def item_bytes(self) -> float:
        """Bytes of item data the index holds per item (`bench model`, `bench compress`
        report it): one float32 vector by default."""
        return 4.0 * self.dim

    def _native_unavailable(self, rows: np.ndarray, mask: np.ndarray) -> object:
        """The backend's own form of the mask, used inside its search; None (the default)
        when it has none: the generic path then fetches past every unavailable row."""
        return None

    @abstractmethod
    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`n` (rows [B, n] int64, scores [B, n] float32) over rows 1..V, best first."""

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | np.ndarray | None = None
    ) -> SearchResult:
        """Top-`k` item rows per query, skipping each query's `exclude` rows (a list of
        arrays, or one [B, m] array where 0 and -1 exclude nothing)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be [B, {self.dim}], got {queries.shape}")
        batch = queries.shape[0]
        excl = pad_exclusions(exclude, batch)
        masked = self._masked_search(queries, k, excl)
        if masked is not None:
            return masked
        gone = self.unavailable
        n = min(k + excl.shape[1] + self._overfetch(gone), self.num_rows - 1)
        rows, scores = self._raw_search(queries, n)
        return drop_excluded(rows, scores, excl, k, gone.mask)

    @staticmethod
    def _overfetch(gone: Unavailable) -> int:
        """Extra candidates to fetch for the unavailable rows: none when the backend
        skips them itself, all of them when it cannot."""
        return 0 if gone.native is not None else len(gone.rows)

    def _masked_search(self, queries: np.ndarray, k: int, excl: np.ndarray
                       ) -> SearchResult | None:
        """Top-`k` with `excl` ([B, m], -1 = none) masked before ranking, for backends
        that score every item anyway; None where the backend cannot (the default):
        then `search` asks `_raw_search` for k + m candidates and filters them."""
        return None


def pad_exclusions(exclude: list[np.ndarray] | np.ndarray | None, batch: int) -> np.ndarray:
    """Exclusion lists as one [B, m] int64 matrix padded with -1 (never a real row).

    A [B, m] array is taken as it is (0 and -1 entries exclude nothing: row 0 is
    padding, never returned), e.g. a batch of left-padded histories.
    """
    if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
        if exclude.shape[0] != batch:
            raise ValueError(f"{exclude.shape[0]} exclusion rows for {batch} queries")
        return exclude.astype(np.int64, copy=False)
    if exclude is None or len(exclude) == 0:
        return np.full((batch, 0), -1, dtype=np.int64)
    if len(exclude) != batch:
        raise ValueError(f"{len(exclude)} exclusion lists for {batch} queries")
    width = max((len(e) for e in exclude), default=0)
    out = np.full((batch, width), -1, dtype=np.int64)
    for i, e in enumerate(exclude):
        out[i, : len(e)] = e
    return out


def drop_excluded(
    rows: np.ndarray, scores: np.ndarray, excl: np.ndarray, k: int,
    unavailable: np.ndarray | None = None,
) -> SearchResult:
    """Keep, per row, the first `k` candidates not in `excl` nor marked in the
    `unavailable` mask [V + 1] (order preserved)."""
    banned = (rows[:, :, None] == excl[:, None, :]).any(axis=2) | (rows <= 0)  # [B, n]
    if unavailable is not None and len(unavailable):
        banned |= unavailable[np.clip(rows, 0, len(unavailable) - 1)]
    # A stable sort on the mask moves allowed candidates to the front, keeping rank order.
    order = np.argsort(banned, axis=1, kind="stable")[:, :k]
    out_rows = np.take_along_axis(rows, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    still_banned = np.take_along_axis(banned, order, axis=1)
    out_rows[still_banned] = -1
    out_scores[still_banned] = -np.inf
    if out_rows.shape[1] < k:  # catalogue smaller than k: pad
        pad = k - out_rows.shape[1]
        out_rows = np.pad(out_rows, ((0, 0), (0, pad)), constant_values=-1)
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return SearchResult(rows=out_rows, scores=out_scores)
