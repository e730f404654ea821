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
