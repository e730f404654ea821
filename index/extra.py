"""Items the index was not built with: a small exact table searched beside it.

An item that arrives on the worker's items topic with content features, unknown to
the serving model, gets a vector from the model's content tower and must be
recommendable within a second, without rebuilding the index (an IVF quantizer, a
stored index, a GPU copy). Those items live here, scored exactly: one [B, n] matmul,
where n is the items added since the model was trained (hundreds or thousands,
against a main catalogue of up to millions), and their top k merged into the main
index's by score. Rows are the caller's (the worker numbers items unknown to the model
V+1, V+2, ...), so a user's history excludes them like any other row.

The arrays are replaced whole on every change, never written in place: a search in
flight keeps the arrays it started with.
"""

from __future__ import annotations

import logging

import numpy as np

from streamrec.index.base import SearchResult

logger = logging.getLogger(__name__)


class ExtraItems:
    """Rows and their vectors, searched exactly; changed only by replacing arrays."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows = np.zeros(0, dtype=np.int64)  # [n], distinct, > 0
        self.vectors = np.zeros((0, dim), dtype=np.float32)  # [n, d]

    def __len__(self) -> int:
        return len(self.rows)

    def upsert(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Add `rows` with their `vectors` [n, d]; a row already held gets its new vector."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(rows), -1)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must be [n, {self.dim}], got {vectors.shape}")
        if (rows <= 0).any():
            raise ValueError("rows must be > 0 (row 0 is padding)")
        last = {r: i for i, r in enumerate(rows.tolist())}  # the last vector given wins
        order = np.fromiter(last.values(), dtype=np.int64, count=len(last))
        rows, vectors = rows[order], vectors[order]
        keep = ~np.isin(self.rows, rows)
        self.rows = np.concatenate([self.rows[keep], rows])
        self.vectors = np.ascontiguousarray(np.concatenate([self.vectors[keep], vectors]))

    def remove(self, rows: np.ndarray) -> None:
        """Stop returning `rows` (those not held are ignored)."""
        keep = ~np.isin(self.rows, np.asarray(rows, dtype=np.int64))
        if not keep.all():
            self.rows, self.vectors = self.rows[keep], self.vectors[keep]

    def clear(self) -> None:
        """Hold nothing (a new model: its vectors come from its own tower)."""
        self.rows = np.zeros(0, dtype=np.int64)
        self.vectors = np.zeros((0, self.dim), dtype=np.float32)

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray) -> SearchResult:
        """Top-`k` held rows per query [B, d], skipping each query's `exclude` rows
        [B, m] (0 and -1 exclude nothing); row -1 / score -inf pad short rows."""
        rows, vectors = self.rows, self.vectors  # one consistent pair
        batch, n = queries.shape[0], len(rows)
        out_rows = np.full((batch, k), -1, dtype=np.int64)
        out_scores = np.full((batch, k), -np.inf, dtype=np.float32)
        if not n or not batch:
            return SearchResult(out_rows, out_scores)
        scores = queries.astype(np.float32, copy=False) @ vectors.T  # [B, n]
        if exclude.size:
            banned = (rows[None, :, None] == exclude[:, None, :]).any(axis=2)  # [B, n]
            scores[banned] = -np.inf
        take = min(k, n)
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]  # [B, take], unordered
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(
            top_scores, order, axis=1)
        found = np.isfinite(top_scores)
        out_rows[:, :take] = np.where(found, rows[top], -1)
        out_scores[:, :take] = top_scores
        return SearchResult(out_rows, out_scores)


def merge_results(a: SearchResult, b: SearchResult, k: int) -> SearchResult:
    """The best `k` of two top-k lists per query, by score (ties: `a` first)."""
    rows = np.concatenate([a.rows, b.rows], axis=1)
    scores = np.concatenate([a.scores, b.scores], axis=1)
    scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return SearchResult(np.take_along_axis(rows, order, axis=1),
                        np.take_along_axis(scores, order, axis=1))


def reserve(merged: SearchResult, fresh: SearchResult, k: int, slots: int) -> SearchResult:
    """`merged` with at least `slots` of each query's `k` items taken from `fresh` (when it
    has them): the fresh items missing from a row replace its lowest-scored others
    (never another fresh pick), and the row stays in score order.

    The worker's `--fresh-slots`: items no one has touched score low against items
    with learned vectors (docs/QUALITY.md, "Item cold start"), so a shop that wants
    new items seen gives them places of their own, filled by relevance among them."""
    if slots <= 0:
        return merged
    rows, scores = merged.rows.copy(), merged.scores.copy()
    fresh_set = fresh.rows[:, :slots]
    have = (rows[:, :, None] == fresh_set[:, None, :]).any(axis=1) | (fresh_set < 0)  # [B, s]
    short = np.flatnonzero(~have.all(axis=1))
    for i in short.tolist():  # only queries whose fresh items did not make it on merit
        missing = fresh_set[i][~have[i]]
        taken = set(fresh_set[i][fresh_set[i] > 0].tolist())
        # the lowest-scored items that are not themselves fresh picks make room
        room = [j for j in range(k - 1, -1, -1) if rows[i, j] not in taken][: len(missing)]
        lookup = dict(zip(fresh.rows[i].tolist(), fresh.scores[i].tolist(), strict=True))
        for j, row in zip(room, missing.tolist(), strict=True):
            rows[i, j], scores[i, j] = row, lookup[row]
        order = np.argsort(-np.where(rows[i] < 0, -np.inf, scores[i]), kind="stable")
        rows[i], scores[i] = rows[i, order], scores[i, order]
    return SearchResult(rows, scores)
