"""The side table of items an index was not built with, and merging its results in."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.index.base import SearchResult
from streamrec.index.extra import ExtraItems, merge_results, reserve


def exact_top(queries: np.ndarray, rows: np.ndarray, vectors: np.ndarray, k: int,
              exclude: np.ndarray) -> list[list[int]]:
    out = []
    for q, ex in zip(queries, exclude, strict=True):
        scored = [(float(q @ v), int(r)) for r, v in zip(rows, vectors, strict=True)
                  if r not in set(ex.tolist())]
        scored.sort(key=lambda t: -t[0])
        out.append([r for _, r in scored[:k]])
    return out


def test_search_is_exact_and_skips_each_querys_exclusions() -> None:
    rng = np.random.default_rng(0)
    extra = ExtraItems(8)
    rows = np.arange(101, 131)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    extra.upsert(rows, vectors)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    exclude = np.stack([rng.choice(rows, 6, replace=False) for _ in range(5)])
    exclude[0, :3] = -1  # padding excludes nothing
    found = extra.search(queries, 4, exclude)
    assert found.rows.tolist() == exact_top(queries, rows, vectors, 4, exclude)
    assert np.all(np.diff(found.scores, axis=1) <= 0)


def test_fewer_rows_than_k_pad_with_minus_one() -> None:
    extra = ExtraItems(2)
    extra.upsert(np.array([7, 9]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    found = extra.search(np.array([[1.0, 0.5]], np.float32), 4, np.array([[9]]))
    assert found.rows.tolist() == [[7, -1, -1, -1]]
    assert found.scores[0, 0] == pytest.approx(1.0)
    assert np.isneginf(found.scores[0, 1:]).all()


def test_upsert_replaces_a_rows_vector_and_remove_drops_it() -> None:
    extra = ExtraItems(2)
    extra.upsert(np.array([5, 6]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    extra.upsert(np.array([5, 5]), np.array([[0.0, 0.1], [0.0, 2.0]]))  # the last one wins
    assert len(extra) == 2
    q = np.array([[0.0, 1.0]], np.float32)
    found = extra.search(q, 2, np.zeros((1, 0), np.int64))
    assert found.rows.tolist() == [[5, 6]]
    assert found.scores.tolist() == [[2.0, 1.0]]
    extra.remove(np.array([5, 42]))
    assert extra.search(q, 2, np.zeros((1, 0), np.int64)).rows.tolist() == [[6, -1]]


def test_a_search_in_flight_keeps_its_arrays() -> None:
    extra = ExtraItems(2)
    extra.upsert(np.array([3]), np.array([[1.0, 1.0]]))
    rows, vectors = extra.rows, extra.vectors
    extra.upsert(np.array([4]), np.array([[2.0, 2.0]]))
    extra.remove(np.array([3]))
    assert rows.tolist() == [3]
    assert vectors.tolist() == [[1.0, 1.0]]


def test_bad_rows_and_shapes_are_refused() -> None:
    extra = ExtraItems(3)
    with pytest.raises(ValueError, match="row 0"):
        extra.upsert(np.array([0]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        extra.upsert(np.array([1]), np.zeros((1, 4)))


def test_merge_takes_the_best_k_of_both_by_score() -> None:
    a = SearchResult(np.array([[1, 2, 3], [4, -1, -1]]),
                     np.array([[0.9, 0.5, 0.1], [0.3, -np.inf, -np.inf]], np.float32))
    b = SearchResult(np.array([[10, 11, -1], [12, 13, 14]]),
                     np.array([[0.7, 0.5, -np.inf], [0.8, 0.2, 0.1]], np.float32))
    merged = merge_results(a, b, 3)
    assert merged.rows.tolist() == [[1, 10, 2], [12, 4, 13]]  # tie 0.5: a's first
    np.testing.assert_allclose(merged.scores, [[0.9, 0.7, 0.5], [0.8, 0.3, 0.2]], rtol=1e-6)


def test_reserve_gives_fresh_items_their_slots_only_when_they_missed_on_score() -> None:
    merged = SearchResult(np.array([[1, 2, 3, 4], [1, 50, 2, 3], [1, 2, -1, -1]]),
                          np.array([[9, 8, 7, 6], [9, 8.5, 8, 7], [9, 8, -np.inf, -np.inf]],
                                   np.float32))
    fresh = SearchResult(np.array([[50, 51, 52, -1], [50, 51, -1, -1], [60, -1, -1, -1]]),
                         np.array([[1, 0.5, 0.2, -np.inf], [8.5, 0.5, -np.inf, -np.inf],
                                   [0.1, -np.inf, -np.inf, -np.inf]], np.float32))
    out = reserve(merged, fresh, 4, 2)
    # row 0: the two best fresh items replace the two lowest; row 1: 50 made it on score,
    # 51 replaces the lowest non-fresh; row 2: the one fresh item fills an empty place.
    assert out.rows.tolist() == [[1, 2, 50, 51], [1, 50, 2, 51], [1, 2, 60, -1]]
    assert out.scores[0].tolist() == [9, 8, 1, 0.5]
    assert reserve(merged, fresh, 4, 0) is merged
