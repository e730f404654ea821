"""The recommendation record: contract fields and the attention explanation."""

from __future__ import annotations

import json

import numpy as np

from streamrec.worker.records import recommendation_json, top_attended, top_attended_batch


def test_explanation_sums_repeated_items_and_skips_padding() -> None:
    history = np.array([0, 0, 5, 7, 5])
    attention = np.array([0.0, 0.0, 0.3, 0.25, 0.45])
    assert top_attended(history, attention, 3) == [(5, 0.75), (7, 0.25)]
    assert top_attended(history, attention, 1) == [(5, 0.75)]


def test_recommendation_record_has_the_contract_fields() -> None:
    value = recommendation_json("u1", ["a", "b"], np.array([2.5, 1.0], dtype=np.float32),
                                False, "v1", 1_700_000_000_000, [("x", 0.9)])
    doc = json.loads(value)
    assert doc["user_id"] == "u1"
    assert doc["items"] == [{"item_id": "a", "score": 2.5}, {"item_id": "b", "score": 1.0}]
    assert doc["model_version"] == "v1"
    assert doc["event_ts"] == 1_700_000_000_000
    assert doc["produced_ts"] >= doc["event_ts"]
    assert doc["explanation"] == {"strategy": "attention",
                                  "history": [{"item_id": "x", "weight": 0.9}]}


def test_batch_explanations_equal_a_per_item_sum_for_every_row() -> None:
    rng = np.random.default_rng(3)
    histories = rng.integers(0, 6, size=(40, 9))  # small catalogue: many repeats, padding
    attention = rng.random((40, 9)) * (rng.random((40, 9)) > 0.2)
    for n in (1, 3, 20):
        got = top_attended_batch(histories, attention, n)
        for row, weights, found in zip(histories, attention, got, strict=True):
            sums: dict[int, float] = {}
            for item, w in zip(row.tolist(), weights.tolist(), strict=True):
                if item > 0 and w > 0:
                    sums[item] = sums.get(item, 0.0) + w
            expected = sorted(sums.items(), key=lambda iw: (-iw[1], iw[0]))[:n]
            assert [i for i, _ in found] == [i for i, _ in expected]
            assert np.allclose([w for _, w in found], [w for _, w in expected])


def test_batch_explanations_of_padding_only_are_empty() -> None:
    histories = np.zeros((2, 4), dtype=np.int64)
    histories[1, 3] = 7  # one item in the last column; the columns before it are cut
    attention = np.zeros((2, 4), dtype=np.float32)
    attention[1, 3] = 1.0
    assert top_attended_batch(histories[:1], attention[:1], 3) == [[]]
    assert top_attended_batch(histories, attention, 3) == [[], [(7, 1.0)]]


def test_batch_values_are_the_single_record_values() -> None:
    """`recommendation_values` (the worker's path) writes each row as `recommendation_json`
    does: catalogue run out (-1 rows), popular rows without history, explanations."""
    from streamrec.worker.batcher import BatchItem
    from streamrec.worker.recommend import Recommendations
    from streamrec.worker.records import recommendation_values

    rng = np.random.default_rng(7)
    ids = np.array(["<pad>", *(f"item-{i}" for i in range(1, 30))], dtype=object)
    histories = rng.integers(0, 30, size=(6, 8))
    histories[4] = 0  # no history: the popular fallback
    attention = (rng.random((6, 8)) * (histories > 0)).astype(np.float32)
    rows = rng.integers(1, 30, size=(6, 5))
    rows[1, 3:] = -1  # the catalogue ran out after 3 items
    scores = rng.normal(size=(6, 5)).astype(np.float32)
    popular = histories.sum(axis=1) == 0
    recs = Recommendations(rows=rows, scores=scores, popular=popular, attention=attention)
    batch = [BatchItem(0, f"u{i}", 1_700_000_000_000 + i) for i in range(6)]
    values = recommendation_values(batch, recs, histories, ids, "v3", 2)
    for i, value in enumerate(values):
        doc = json.loads(value)
        n = int((rows[i] > 0).sum())
        why = [(ids[r], w) for r, w in top_attended(histories[i], attention[i], 2)]
        expected = json.loads(recommendation_json(
            f"u{i}", ids[rows[i, :n]].tolist(), scores[i, :n], bool(popular[i]), "v3",
            1_700_000_000_000 + i, why, produced_ts=doc["produced_ts"]))
        assert doc == expected, i
    assert json.loads(values[4])["explanation"] == {"strategy": "popular", "history": []}
    assert len(json.loads(values[1])["items"]) == 3
