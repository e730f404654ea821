"""The recommendation record: its JSON (docs/CONTRACTS.md) and its attention explanation.

`recommendation_values` builds a whole batch's record values at once: the numpy
parts (the explanation's per-item sums, names and rounding of scores and weights)
run once per batch, leaving one dict and one `orjson.dumps` per record in Python.
The worker's loop spends more time here than anywhere else but the Kafka client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from streamrec.worker.batcher import BatchItem
from streamrec.worker.validate import now_ms

if TYPE_CHECKING:  # the model stage's output type; importing it at run time loads torch
    from streamrec.worker.recommend import Recommendations

SCORE_DECIMALS = 6
WEIGHT_DECIMALS = 4


def strategy(popular: bool) -> str:
    """The record's `explanation.strategy`, also the label its acknowledgement is
    counted under (`streamrec_recommendations_published_total`)."""
    return "popular" if popular else "attention"


def recommendation_json(
    user_id: str, item_ids: list[str], scores: np.ndarray | list[float], popular: bool,
    model_version: str, event_ts: int, explanation: list[tuple[str, float]],
    produced_ts: int | None = None,
) -> bytes:
    """One recommendation record value, per the contract in docs/CONTRACTS.md."""
    doc: dict[str, Any] = {
        "user_id": user_id,
        "items": [
            {"item_id": i, "score": round(float(s), SCORE_DECIMALS)}
            for i, s in zip(item_ids, scores, strict=True)
        ],
        "model_version": model_version,
        "event_ts": event_ts,
        "produced_ts": now_ms() if produced_ts is None else produced_ts,
        "explanation": {
            "strategy": strategy(popular),
            "history": [{"item_id": i, "weight": round(w, WEIGHT_DECIMALS)}
                        for i, w in explanation],
        },
    }
    return orjson.dumps(doc)


def recommendation_values(
    batch: list[BatchItem], recs: Recommendations, histories: np.ndarray,
    external_ids: np.ndarray, model_version: str, explain_top: int,
) -> list[bytes]:
    """The record value of every batch row, as `recommendation_json` gives it one by one;
    `external_ids[row]` names item rows (an object array)."""
    items, sums, explained = _top_attended_arrays(histories, recs.attention, explain_top)
    why_names = external_ids[items].tolist()
    why_weights = np.round(sums, WEIGHT_DECIMALS).tolist()
    scores = np.round(recs.scores.astype(np.float64), SCORE_DECIMALS).tolist()
    # Valid rows come first in each row (-1 pads the end): one lookup for the batch.
    found = (recs.rows > 0).sum(axis=1).tolist()
    names = external_ids[np.maximum(recs.rows, 0)].tolist()
    strategies = [strategy(p) for p in recs.popular.tolist()]
    produced = now_ms()
    dumps = orjson.dumps
    values = []
    for i, item in enumerate(batch):
        n, e = found[i], explained[i]
        values.append(dumps({
            "user_id": item.user_id,
            "items": [{"item_id": x, "score": s}
                      for x, s in zip(names[i][:n], scores[i][:n], strict=True)],
            "model_version": model_version,
            "event_ts": item.event_ts,
            "produced_ts": produced,
            "explanation": {
                "strategy": strategies[i],
                "history": [{"item_id": x, "weight": w}
                            for x, w in zip(why_names[i][:e], why_weights[i][:e], strict=True)],
            },
        }))
    return values


def top_attended(history: np.ndarray, attention: np.ndarray, n: int) -> list[tuple[int, float]]:
    """The `n` history rows with the most attention, best first, as (row, weight).

    An item seen several times in the history gets the sum of its positions' weights,
    so the explanation names items, not positions.
    """
    return top_attended_batch(history[None, :], attention[None, :], n)[0]


def top_attended_batch(histories: np.ndarray, attention: np.ndarray, n: int
                       ) -> list[list[tuple[int, float]]]:
    """`top_attended` for every row of histories/attention [B, L], in one vectorised pass."""
    items, sums, found = _top_attended_arrays(histories, attention, n)
    return [list(zip(i[:c], s[:c], strict=True))
            for i, s, c in zip(items.tolist(), sums.tolist(), found, strict=True)]


def _top_attended_arrays(histories: np.ndarray, attention: np.ndarray, n: int
                         ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per row of histories/attention [B, L]: the `n` best item rows [B, n'] and their
    attention sums [B, n'], best first, and how many of them count (sum > 0).

    Columns where every row is padding are cut first (most histories are short);
    each row is then sorted by item so that repeats of one item are neighbours and
    summed, and the sums are ranked per row (ties: the smaller item row first). Row-wise
    sorts of the trimmed width cost about half of one sort over the whole batch.
    """
    used = np.flatnonzero((histories > 0).any(axis=0))
    if not len(used):
        empty = np.zeros((histories.shape[0], 0))
        return empty.astype(np.int64), empty, [0] * histories.shape[0]
    items = histories[:, used[0]:].astype(np.int64)
    weights = attention[:, used[0]:].astype(np.float64)
    keep = (items > 0) & (weights > 0)
    items = np.where(keep, items, 0)
    order = np.argsort(items, axis=1, kind="stable")
    items = np.take_along_axis(items, order, axis=1)
    weights = np.take_along_axis(np.where(keep, weights, 0.0), order, axis=1)
    first = np.ones(items.shape, dtype=bool)  # the first position of each item in its row
    first[:, 1:] = items[:, 1:] != items[:, :-1]
    starts = np.flatnonzero(first)
    sums = np.full(items.size, -1.0)
    sums[starts] = np.add.reduceat(weights.reshape(-1), starts)
    sums = sums.reshape(items.shape)
    sums[items == 0] = -1.0
    top = np.argsort(-sums, axis=1, kind="stable")[:, :n]  # stable: by item on ties
    top_sums = np.take_along_axis(sums, top, axis=1)
    return (np.take_along_axis(items, top, axis=1), top_sums,
            (top_sums > 0).sum(axis=1).tolist())
