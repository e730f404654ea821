"""Recall@k of an index against exact search, on real query vectors.

An approximate index's quality is a property of the item table and the queries
together: the same IVF parameters find 99% of the true top 10 for one model and 85%
for another. So the worker measures the index it is about to serve on the model's
own query encodings (`queries.safetensors` of the checkpoint: validation histories
encoded at training) and refuses one below `--min-recall`. Where the index may choose
how much of itself to search (IVF with `--nprobe 0`), `measure` with a target widens
the search step by step until the sample's recall reaches it: `streamrec index build`
stores the breadth it chose, and a loader starts from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamrec.common.pacing import pause
from streamrec.index.base import ItemIndex
from streamrec.index.params import MIN_WIDEN_GAIN
from streamrec.index.truth import RecallTruth, exact_top_k

# Query x item scores the measurement may compute when no exact answer is stored
# with the index (index/truth.py): at a million items, 500 queries (recall to about
# +-0.005) in 6-8 s of one core on a loader thread, paced beside the poll loop;
# smaller catalogues take every query.
SCORE_CELLS = 500_000_000
SEARCH_SLICE = 64  # queries per search of the measured index, a paced loader resting between


def sample_size(queries: int, items: int) -> int:
    """How many of `queries` to measure recall on over `items` items (at least 100)."""
    return max(min(queries, 100), min(queries, SCORE_CELLS // max(items, 1)))


def recall_at_k(index: ItemIndex, table: np.ndarray, queries: np.ndarray, k: int = 10,
                truth: np.ndarray | None = None) -> float:
    """Mean share of each query's exact top `k` that `index` returns in its top `k`.

    `truth`: the exact top-k rows of `queries` when known ([Q, >= k]); else computed."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not len(queries):
        raise ValueError("recall needs at least one query")
    truth = exact_top_k(table, queries, k) if truth is None else truth[:, :k]
    parts = []
    for start in range(0, len(queries), SEARCH_SLICE):
        parts.append(index.search(queries[start:start + SEARCH_SLICE], k).rows)
        pause()
    found = np.concatenate(parts)
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / truth.shape[1])


@dataclass(frozen=True)
class Recall:
    """One measurement of an index's recall@k, and what it was measured against."""

    value: float
    queries: int  # how many queries it was measured on
    truth: RecallTruth  # their exact answer (what `streamrec index build` stores)
    stored: bool  # True: that answer came stored with the index; False: computed now
    widened: int = 0  # times the index widened its search to reach the target


def measure(index: ItemIndex, table: np.ndarray, queries: np.ndarray, k: int = 10,
            every_query: bool = False, target: float = 0.0) -> Recall:
    """recall@k of `index` on `queries` (real query encodings, the same sample every time).

    Against the exact answer stored with the index when it answers these queries (a
    search of the index alone); else against exact search now, on as many queries as
    `sample_size` allows, or on every query (`every_query`: an offline build that
    stores the answer). Below `target`, the index widens its search (`ItemIndex.widen`)
    and is measured again on the same sample, until it reaches `target`, cannot widen,
    or a step gains less than MIN_WIDEN_GAIN (that step undone): the recall returned is
    the one it now serves at."""
    stored = index.truth
    sample = stored.sample(queries) if stored is not None and stored.k >= k else None
    if stored is not None and sample is not None:
        truth = stored
    else:
        sample = queries if every_query else queries[:sample_size(len(queries),
                                                                   table.shape[0] - 1)]
        truth = RecallTruth.compute(table, sample, k)
    value, widened = recall_at_k(index, table, sample, k, truth.rows), 0
    while value < target and index.widen():
        wider = recall_at_k(index, table, sample, k, truth.rows)
        if wider - value < MIN_WIDEN_GAIN:
            index.narrow()
            break
        value, widened = wider, widened + 1
    return Recall(value, len(sample), truth, stored=truth is stored, widened=widened)
