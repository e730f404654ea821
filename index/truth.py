"""The exact top k of a query sample: what an approximate index's recall is measured against.

Exact search over a million items costs 13 ms of one core per query (measured on the
2-core AMD EPYC box), so measuring recall@10 on 500 queries kept a worker's loader
thread busy for 6-8 s of CPU at every start and hot swap, beside the poll loop.
The answer depends only on the item table and the queries, both fixed in a
checkpoint, so `streamrec index build` computes it once and stores it with the
index (index/store.py). A loader then searches only the index it will serve and
compares (index/recall.py): 1,000 queries in about 50 ms at a million items.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from streamrec.common.pacing import pause

SCORE_BUDGET = 1 << 22  # float32 scores per exact scoring block (16 MB): 4 queries at 1M items


def exact_top_k(table: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows [Q, k] of the k best items (rows 1..V of `table`) per query, by inner product.

    torch's matmul and top-k release the GIL (the worker's poll loop keeps running
    while a loader thread measures) and beat numpy's argpartition 3-4 times."""
    items = torch.from_numpy(np.ascontiguousarray(table[1:], dtype=np.float32))
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    k = min(k, len(items))
    out = np.empty((len(queries), k), dtype=np.int64)
    chunk = max(1, SCORE_BUDGET // len(items))
    with torch.inference_mode():
        for start in range(0, len(queries), chunk):
            scores = q[start:start + chunk] @ items.T
            out[start:start + chunk] = torch.topk(scores, k, dim=1).indices.numpy() + 1
            pause()  # a paced loader rests between blocks
    return out


def queries_digest(queries: np.ndarray) -> str:
    """sha256 of the float32 query vectors: which sample a stored answer belongs to."""
    return hashlib.sha256(np.ascontiguousarray(queries, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class RecallTruth:
    """The exact top k rows of a query sample over one item table."""

    rows: np.ndarray  # [Q, k] int64, rows 1..V, best first
    queries_sha256: str  # the sample `rows` answers (`queries_digest`)

    @classmethod
    def compute(cls, table: np.ndarray, queries: np.ndarray, k: int = 10) -> RecallTruth:
        """Exact search of every query over `table` (the costly part: once, at build)."""
        return cls(exact_top_k(table, queries, k), queries_digest(queries))

    @property
    def k(self) -> int:
        """How many of each query's best items are known."""
        return int(self.rows.shape[1]) if self.rows.ndim == 2 else 0

    def sample(self, queries: np.ndarray) -> np.ndarray | None:
        """The first rows of `queries` that this answers, or None when they are not the
        sample it was computed for (another checkpoint's queries, or too few of them)."""
        n = len(self.rows)
        if n == 0 or len(queries) < n or queries_digest(queries[:n]) != self.queries_sha256:
            return None
        return queries[:n]
