"""Quantized codes pick candidates, float32 ranks them: an index of SQ8 or PQ codes
fetches `rescore` times the candidates and returns the best by their exact scores, so
it finds more of the exact top 10 at the same lists searched; a breadth stored for
other re-scoring is chosen again at load."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from streamrec.index.ann import AnnIndex
from streamrec.index.params import DEFAULT_NPROBE, DEFAULT_RESCORE, AnnParams
from streamrec.index.recall import measure, recall_at_k
from streamrec.index.store import META_FILE, index_files, load_stored

from .test_ann import K, clustered_table, queries_for


@pytest.fixture(scope="module")
def crowded() -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters: many items score within SQ8's rounding of each other."""
    table = clustered_table(items=4000, dim=16, clusters=8)
    return table, queries_for(table, n=300)


def test_quantized_kinds_rescore_by_default_and_float_kinds_do_not() -> None:
    for kind in ("ivf-sq8", "ivf-pq", "sq8", "pq"):
        assert AnnParams().resolved(4000, 16, kind).rescore == DEFAULT_RESCORE == 2
    for kind in ("ivf", "hnsw"):
        assert AnnParams().resolved(4000, 16, kind).rescore == 1
    assert AnnParams(rescore=3).resolved(4000, 16, "ivf").rescore == 3  # asked: kept


def test_rescored_candidates_come_back_ranked_by_their_float32_scores(
        crowded: tuple[np.ndarray, np.ndarray]) -> None:
    table, queries = crowded
    index = AnnIndex(table, "sq8", AnnParams())
    found = index.search(queries, K)
    exact = np.einsum("bd,bkd->bk", queries, table[found.rows])
    np.testing.assert_allclose(found.scores, exact, rtol=1e-5, atol=1e-5)
    assert (np.diff(found.scores, axis=1) <= 0).all()  # best first
    codes_only = AnnIndex(table, "sq8", AnnParams(rescore=1)).search(queries, K)
    assert not np.allclose(codes_only.scores, np.einsum(
        "bd,bkd->bk", queries, table[codes_only.rows]), rtol=1e-5, atol=1e-5)


def test_rescoring_finds_more_of_the_exact_top_10_at_the_same_lists(
        crowded: tuple[np.ndarray, np.ndarray]) -> None:
    table, queries = crowded
    plain = AnnIndex(table, "ivf-sq8", AnnParams(nlist=40, nprobe=8, rescore=1))
    again = AnnIndex(table, "ivf-sq8", AnnParams(nlist=40, nprobe=8, rescore=2),
                     built=plain.cpu_index)
    codes, rescored = recall_at_k(plain, table, queries), recall_at_k(again, table, queries)
    assert rescored >= codes + 0.02, (codes, rescored)


def test_a_breadth_chosen_for_other_rescoring_is_chosen_again_at_load(tmp_path: Path) -> None:
    """index.json written before re-scoring has no `rescore`; its nprobe was chosen for
    the codes' own scores, so a load starts from the default and widens again."""
    table = clustered_table(items=4000, clusters=1)  # no structure: 16 lists find little
    queries = queries_for(table, n=300)
    index = AnnIndex(table, "ivf-sq8", AnnParams(nlist=100, rescore=1))
    measure(index, table, queries, target=0.9)
    chosen = index.params.nprobe
    assert chosen > DEFAULT_NPROBE
    for name, content in index_files(index, table, recall=0.9).items():
        (tmp_path / name).write_bytes(content)
    same, _ = load_stored(tmp_path, table, "ivf-sq8", AnnParams(rescore=1))
    assert same is not None
    assert same.params.nprobe == chosen
    other, _ = load_stored(tmp_path, table, "ivf-sq8", AnnParams())  # rescore 2 now
    assert other is not None
    assert (other.params.nprobe, other.params.rescore) == (DEFAULT_NPROBE, 2)
    meta = json.loads((tmp_path / META_FILE).read_text())
    del meta["params"]["rescore"]  # as written before re-scoring existed
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    older, _ = load_stored(tmp_path, table, "ivf-sq8", AnnParams())
    assert older is not None
    assert (older.params.nprobe, older.params.rescore) == (DEFAULT_NPROBE, 2)
    assert dataclasses.replace(older.params, nprobe=chosen, rescore=1) == same.params
