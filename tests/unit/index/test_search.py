"""Exact top-k search with per-user exclusions, for every index backend."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.index import build_index
from streamrec.index.errors import IndexBuildError

BACKENDS = ["faiss", "torch", "torch-bf16"]


def table(num_items: int = 50, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num_items + 1, dim)).astype(np.float32)


def brute_force(emb: np.ndarray, q: np.ndarray, k: int, exclude: set[int]) -> list[int]:
    scores = emb @ q
    order = [int(r) for r in np.argsort(-scores, kind="stable") if r != 0 and r not in exclude]
    return order[:k]


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_brute_force_and_never_returns_excluded_or_padding(backend: str) -> None:
    emb = table()
    index = build_index(emb, backend=backend, device="cpu")
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(6, 8)).astype(np.float32)
    exclude = [np.array(rng.choice(np.arange(1, 51), size=n, replace=False)) for n in range(6)]
    # Make the excluded items the best-scoring ones, the hard case for a naive top-k.
    exclude[5] = np.array(brute_force(emb, queries[5], 5, set()))
    result = index.search(queries, 10, exclude)
    for i in range(6):
        expected = brute_force(emb, queries[i], 10, set(exclude[i].tolist()))
        assert result.rows[i].tolist() == expected
        np.testing.assert_allclose(result.scores[i], emb[expected] @ queries[i], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pads_with_minus_one_when_the_catalogue_runs_out(backend: str) -> None:
    emb = table(num_items=4)
    index = build_index(emb, backend=backend, device="cpu")
    result = index.search(emb[1:2] * 0 + 1, 5, [np.array([1, 2])])
    assert sorted(result.rows[0][:2].tolist()) == [3, 4]
    assert result.rows[0][2:].tolist() == [-1, -1, -1]
    assert np.isneginf(result.scores[0][2:]).all()


def test_refuses_a_table_without_items() -> None:
    with pytest.raises(IndexBuildError):
        build_index(np.zeros((1, 4), dtype=np.float32))


def test_query_dimension_is_checked() -> None:
    index = build_index(table(), backend="torch", device="cpu")
    with pytest.raises(ValueError, match="queries"):
        index.search(np.zeros((1, 3), dtype=np.float32), 3)


def test_masked_torch_search_equals_candidates_then_filter() -> None:
    """The torch backend masks exclusions before its top-k; the generic path asks for
    k + m candidates and filters. Same rows, same scores, chunk boundaries included."""
    from streamrec.index.base import drop_excluded, pad_exclusions

    rng = np.random.default_rng(7)
    emb = rng.standard_normal((3001, 8)).astype(np.float32)
    emb[0] = 0
    index = build_index(emb, backend="torch", device="cpu")
    index.chunk = 7  # several chunks, the last one short
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    exclude = [rng.choice(np.arange(1, 3001), size=rng.integers(0, 40), replace=False)
               for _ in range(30)]
    got = index.search(queries, 10, exclude)
    excl = pad_exclusions(exclude, 30)
    rows, scores = index._raw_search(queries, 10 + excl.shape[1])
    want = drop_excluded(rows, scores, excl, 10)
    assert np.array_equal(got.rows, want.rows)
    assert np.allclose(got.scores, want.scores)
    for row, banned in zip(got.rows, exclude, strict=True):
        assert not set(row.tolist()) & set(banned.tolist())
