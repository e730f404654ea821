"""Rows made unavailable (items retired from the catalogue) are never returned by any
backend, for every query, and a large retired set still leaves every user k items."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.index import build_index
from streamrec.index.base import ItemIndex
from streamrec.index.truth import exact_top_k

faiss = pytest.importorskip("faiss")

from streamrec.index.ann import AnnIndex  # noqa: E402
from streamrec.index.faiss_index import BitmapSelector  # noqa: E402
from streamrec.index.params import KINDS, AnnParams  # noqa: E402
from tests.unit.index.test_ann import clustered_table, queries_for  # noqa: E402

K = 10
EXACT = ["torch", "faiss", "torch-bf16"]  # torch-bf16: exact on these tables (re-scored)


def brute_force(table: np.ndarray, queries: np.ndarray, k: int, banned: set[int],
                histories: np.ndarray) -> list[list[int]]:
    out = []
    for q, history in zip(queries, histories, strict=True):
        skip = banned | set(history.tolist()) | {0}
        order = [int(r) for r in np.argsort(-(table @ q), kind="stable") if int(r) not in skip]
        out.append(order[:k])
    return out


_BUILT: dict[str, ItemIndex] = {}  # PQ codebooks take seconds to train: one per kind


def make(kind: str, table: np.ndarray) -> ItemIndex:
    """The index of `kind` over `clustered_table()`, nothing unavailable."""
    if kind in EXACT:
        return build_index(table, backend=kind, device="cpu")
    np.testing.assert_array_equal(table, clustered_table())
    if kind not in _BUILT:
        _BUILT[kind] = AnnIndex(table, kind, AnnParams(nlist=60, nprobe=1, ef_search=16,
                                                       pq_m=4), device="cpu")
    index = _BUILT[kind]
    index.set_unavailable(np.zeros(0, np.int64))
    return index


@pytest.mark.parametrize("kind", EXACT)
def test_exact_backends_return_the_exact_top_k_among_the_available_items(kind: str) -> None:
    table = clustered_table()
    queries = queries_for(table, n=120)
    # The hard case: retire each query's best items, so a naive top-k would be all gone.
    retired = np.unique(exact_top_k(table, queries, 5))
    histories = exact_top_k(table, queries + 0.1, 8)
    index = make(kind, table)
    index.set_unavailable(retired)
    found = index.search(queries, K, histories)
    want = brute_force(table, queries, K, set(retired.tolist()), histories)
    assert found.rows.tolist() == want


@pytest.mark.parametrize("kind", EXACT + list(KINDS))
def test_a_large_retired_set_still_gives_every_user_k_items(kind: str) -> None:
    """90% of the catalogue retired, the queries' own best items among them, one IVF list
    probed and a 40-item history per user: k available items for everyone, none retired,
    none from the history."""
    table = clustered_table()
    queries = queries_for(table, n=120)
    rng = np.random.default_rng(3)
    retired = rng.choice(np.arange(1, len(table)), size=int(0.9 * (len(table) - 1)),
                         replace=False)
    retired = np.union1d(retired, exact_top_k(table, queries, 20))
    available = np.setdiff1d(np.arange(1, len(table)), retired)
    histories = available[rng.integers(0, len(available), (len(queries), 40))]
    index = make(kind, table)
    index.set_unavailable(retired)
    found = index.search(queries, K, histories)
    assert (found.rows > 0).all(), "a user got fewer than k items"
    assert not np.isin(found.rows, retired).any()
    assert not (found.rows[:, :, None] == histories[:, None, :]).any()
    assert all(len(set(r)) == K for r in found.rows.tolist())


@pytest.mark.parametrize("kind", EXACT + list(KINDS))
def test_a_new_set_replaces_the_old_and_an_empty_one_brings_everything_back(kind: str) -> None:
    table = clustered_table()
    queries = queries_for(table, n=20)
    index = make(kind, table)
    before = index.search(queries, K)
    first = np.unique(before.rows[:, :3])
    index.set_unavailable(first)
    assert not np.isin(index.search(queries, K).rows, first).any()
    index.set_unavailable(np.array([0, -1, len(table), len(table) + 5]))  # nothing real
    assert index.unavailable.rows.size == 0
    again = index.search(queries, K)
    np.testing.assert_array_equal(again.rows, before.rows)


@pytest.mark.parametrize("kind", ["faiss", *(k for k in KINDS if k != "pq")])
def test_faiss_skips_retired_rows_itself_instead_of_fetching_past_them(
    kind: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A retired set of 2,000 rows costs FAISS a bit test per scanned vector, not 2,000
    more candidates per query."""
    table = clustered_table()
    queries = queries_for(table, n=20)
    index = make(kind, table)
    index.set_unavailable(np.arange(1, 2001))
    assert isinstance(index.unavailable.native, BitmapSelector)
    asked: list[int] = []
    raw = index._raw_search

    def spy(q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        asked.append(n)
        return raw(q, n)

    monkeypatch.setattr(index, "_raw_search", spy)
    found = index.search(queries, K, np.ones((20, 5), np.int64))
    rescore = index.params.rescore if isinstance(index, AnnIndex) else 1  # 2 x K, quantized
    assert asked == [K * rescore + 5]
    assert not np.isin(found.rows, np.arange(1, 2001)).any()


def test_pq_codes_fall_back_to_fetching_past_the_retired_rows() -> None:
    """FAISS refuses a selector on IndexPQ: the generic path fetches k + m + u."""
    table = clustered_table()
    index = make("pq", table)
    index.set_unavailable(np.arange(1, 101))
    assert index.unavailable.native is None
    found = index.search(queries_for(table, n=10), K)
    assert (found.rows > 100).all()
