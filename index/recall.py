"""Recall@k of an index against exact search, on real query vectors.

An approximate index's quality is a property of the item table and the queries
together: the same IVF parameters find 99% of the true top 10 for one model and 85%
for another. So the worker measures the index it is about to serve on the model's
own query encodings (`queries.safetensors` of the checkpoint: validation histories
encoded at training) and refuses one below `--min-recall`.
"""

from __future__ import annotations

import numpy as np
import torch

from streamrec.common.pacing import pause
from streamrec.index.base import ItemIndex

SCORE_BUDGET = 1 << 22  # float32 scores per exact scoring block (16 MB): 4 queries at 1M items
# Query x item scores the measurement may compute: at a million items, 500 queries
# (recall to about +-0.005) in 2-3 s of one core on the loader thread, where the
# model stage and the broker want the others; smaller catalogues take every query.
SCORE_CELLS = 500_000_000
SEARCH_SLICE = 64  # queries per search of the measured index, a paced loader resting between


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


def sample_size(queries: int, items: int) -> int:
    """How many of `queries` to measure recall on over `items` items (at least 100)."""
    return max(min(queries, 100), min(queries, SCORE_CELLS // max(items, 1)))


def recall_at_k(index: ItemIndex, table: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Mean share of each query's exact top `k` that `index` returns in its top `k`."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not len(queries):
        raise ValueError("recall needs at least one query")
    truth = exact_top_k(table, queries, k)
    parts = []
    for start in range(0, len(queries), SEARCH_SLICE):
        parts.append(index.search(queries[start:start + SEARCH_SLICE], k).rows)
        pause()
    found = np.concatenate(parts)
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / truth.shape[1])
