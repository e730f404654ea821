"""Approximate indexes keep the exact index's promises: no history item, always k items;
their recall is measured, and a stored index is read back only over its own table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from streamrec.index.ann import AnnIndex  # noqa: E402
from streamrec.index.build import build_index  # noqa: E402
from streamrec.index.params import DEFAULT_NPROBE, KINDS, AnnParams  # noqa: E402
from streamrec.index.recall import recall_at_k  # noqa: E402
from streamrec.index.store import index_files, load_stored  # noqa: E402
from streamrec.index.truth import exact_top_k  # noqa: E402

K = 10


def clustered_table(items: int = 3000, dim: int = 16, clusters: int = 40,
                    seed: int = 0) -> np.ndarray:
    """[items + 1, dim], row 0 padding: items around cluster centres, like trained vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) * 2
    table = centres[rng.integers(0, clusters, items)] + rng.standard_normal(
        (items, dim)).astype(np.float32) * 0.5
    return np.vstack([np.zeros((1, dim), np.float32), table]).astype(np.float32)


def queries_for(table: np.ndarray, n: int = 200, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, len(table), n)
    return table[rows] + rng.standard_normal((n, table.shape[1])).astype(np.float32) * 0.3


@pytest.mark.parametrize("kind", list(KINDS))
def test_never_a_history_item_and_always_k_items(kind: str) -> None:
    table = clustered_table()
    queries = queries_for(table)
    # One list searched per query, and each history holds the query's exact top 40:
    # the approximate pass alone comes back short for many rows.
    index = AnnIndex(table, kind, AnnParams(nlist=60, nprobe=1, ef_search=16, pq_m=4))
    histories = exact_top_k(table, queries, 40)
    found = index.search(queries, K, histories)
    assert found.rows.shape == (len(queries), K)
    assert (found.rows > 0).all()  # k real items for every query
    assert not (found.rows[:, :, None] == histories[:, None, :]).any()
    assert all(len(set(r)) == K for r in found.rows.tolist())


def test_short_rows_are_searched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The case above does need the exhaustive pass (else the test proves nothing)."""
    table = clustered_table()
    queries = queries_for(table)
    index = AnnIndex(table, "ivf", AnnParams(nlist=60, nprobe=1))
    monkeypatch.setattr(index, "_exhaustive", lambda q, n: index._raw_search(q, n))
    found = index.search(queries, K, exact_top_k(table, queries, 40))
    assert (found.rows < 0).any()


def test_small_catalogue_pads_like_the_exact_index() -> None:
    table = clustered_table(items=60, clusters=3)
    index = AnnIndex(table, "ivf", AnnParams(nlist=2, nprobe=1))
    history = np.arange(1, 55)[None, :]  # 54 of 60 items seen: 6 left
    found = index.search(queries_for(table, 1), K, history)
    assert sorted(found.rows[0, :6].tolist()) == list(range(55, 61))
    assert (found.rows[0, 6:] == -1).all()


def test_recall_grows_with_the_lists_searched() -> None:
    table = clustered_table()
    queries = queries_for(table)
    low = recall_at_k(AnnIndex(table, "ivf", AnnParams(nlist=100, nprobe=1)), table, queries)
    full = recall_at_k(AnnIndex(table, "ivf", AnnParams(nlist=100, nprobe=100)), table, queries)
    exact = recall_at_k(build_index(table, "torch"), table, queries)
    assert exact == 1.0
    assert full == 1.0  # every list: IVF-Flat is exact
    assert low < 0.9


def test_auto_is_exact_below_the_threshold_and_approximate_above(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrec.index import build

    table = clustered_table()
    assert not build_index(table, "auto", device="cpu").approximate
    monkeypatch.setattr(build, "AUTO_APPROXIMATE_ITEMS", 1000)
    index = build_index(table, "auto", device="cpu")
    assert index.approximate
    assert index.name == f"faiss-{build.AUTO_APPROXIMATE_KIND}"


def _store(tmp_path: Path, index: AnnIndex, table: np.ndarray) -> Path:
    for name, content in index_files(index, table, recall=0.97).items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


def test_stored_index_round_trips(tmp_path: Path) -> None:
    table = clustered_table()
    queries = queries_for(table)
    built = AnnIndex(table, "ivf-sq8", AnnParams(nlist=50, nprobe=4))
    _store(tmp_path, built, table)
    again, why = load_stored(tmp_path, table, "ivf-sq8", AnnParams(nprobe=4))
    assert again is not None, why
    assert again.params == built.params
    assert again.build_s == round(built.build_s, 3) > 0  # as stored: what building took
    assert np.array_equal(again.search(queries, K).rows, built.search(queries, K).rows)
    # Search parameters may change at load; build parameters come from the file.
    wider, _ = load_stored(tmp_path, table, "ivf-sq8", AnnParams(nprobe=50))
    assert wider is not None
    assert wider.params.nprobe == 50
    assert wider.params.nlist == 50
    # --nprobe 0 is today's default, not the nprobe the index was built with
    default, _ = load_stored(tmp_path, table, "ivf-sq8", AnnParams())
    assert default is not None
    assert default.params.nprobe == DEFAULT_NPROBE != built.params.nprobe


@pytest.mark.parametrize(("change", "reason"), [
    ({"kind": "hnsw"}, "'hnsw' was asked for"),
    ({"params": AnnParams(nlist=20)}, "built with nlist 50 (asked 20)"),
    ({"table": "other"}, "another item table"),
])
def test_stored_index_that_does_not_fit_is_not_used(tmp_path: Path, change: dict,
                                                    reason: str) -> None:
    table = clustered_table()
    _store(tmp_path, AnnIndex(table, "ivf", AnnParams(nlist=50)), table)
    asked = {"kind": "ivf", "params": AnnParams(), "table": table} | change
    if change.get("table") == "other":
        asked["table"] = clustered_table(seed=5)
    index, why = load_stored(tmp_path, asked["table"], asked["kind"], asked["params"])
    assert index is None
    assert reason in why


def test_no_stored_index(tmp_path: Path) -> None:
    index, why = load_stored(tmp_path, clustered_table(), "ivf", AnnParams())
    assert index is None
    assert why == "the checkpoint stores no index"


def test_params_resolve_from_the_catalogue() -> None:
    p = AnnParams().resolved(1_000_000, 64, "ivf")
    assert (p.nlist, p.nprobe, p.pq_m) == (4000, 16, 16)
    assert AnnParams().resolved(100, 64, "ivf").nlist == 2  # at least 39 items per list
    assert AnnParams().resolved(100, 64, "ivf").nprobe == 2  # never more lists than there are
    assert dataclasses.replace(p, nprobe=0).resolved(1_000_000, 64, "ivf").nprobe == 16
    with pytest.raises(ValueError, match="nprobe must be >= 0"):
        AnnParams(nprobe=-1)


def test_a_kind_that_cannot_be_built_says_why() -> None:
    from streamrec.index.errors import IndexBuildError

    with pytest.raises(IndexBuildError, match="could not build a ivf-pq index over 100 items"):
        AnnIndex(clustered_table(items=100, clusters=3), "ivf-pq", AnnParams(nlist=1))


def test_exact_top_k_is_the_best_k_by_inner_product() -> None:
    table = clustered_table()
    queries = queries_for(table)
    scores = queries @ table[1:].T
    want = np.sort(np.argsort(-scores, axis=1)[:, :10] + 1, axis=1)
    assert np.array_equal(np.sort(exact_top_k(table, queries, 10), axis=1), want)


def test_the_recall_sample_shrinks_with_the_catalogue() -> None:
    from streamrec.index.recall import SCORE_CELLS, sample_size

    assert sample_size(1000, 23_715) == 1000
    assert sample_size(1000, 1_000_000) == SCORE_CELLS // 1_000_000 == 500
    assert sample_size(1000, 100_000_000) == 100  # never fewer than 100 queries
    assert sample_size(40, 100_000_000) == 40
