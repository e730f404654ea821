"""The exact answer stored with an index: a loader measures recall against it instead
of scoring every item again, and only when it answers the very queries it measures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from streamrec.index.ann import AnnIndex
from streamrec.index.params import AnnParams
from streamrec.index.recall import measure, recall_at_k
from streamrec.index.store import META_FILE, TRUTH_FILE, index_files, load_stored
from streamrec.index.truth import RecallTruth, exact_top_k
from tests.unit.index.test_ann import clustered_table, queries_for

PARAMS = AnnParams(nlist=50, nprobe=2)


def _stored(tmp_path: Path, table: np.ndarray, truth: RecallTruth | None) -> AnnIndex:
    for name, content in index_files(AnnIndex(table, "ivf", PARAMS), table, 0.9,
                                     truth).items():
        (tmp_path / name).write_bytes(content)
    index, why = load_stored(tmp_path, table, "ivf", PARAMS)
    assert index is not None, why
    return index


def test_the_stored_answer_is_read_back_and_measures_the_same_recall(tmp_path: Path) -> None:
    table = clustered_table()
    queries = queries_for(table)
    index = _stored(tmp_path, table, RecallTruth.compute(table, queries))
    assert index.truth is not None
    assert np.array_equal(index.truth.rows, exact_top_k(table, queries, 10))
    assert json.loads((tmp_path / META_FILE).read_text())["truth"]["queries"] == len(queries)
    found = measure(index, table, queries)
    assert found.stored
    assert found.queries == len(queries)
    assert found.value == recall_at_k(index, table, queries)  # as against exact search now
    assert found.value < 1.0  # nprobe 2 of 50 lists: a recall that a wrong answer would move


def test_the_stored_answer_is_what_recall_is_measured_against(tmp_path: Path) -> None:
    """Rows of another item table stored as the answer: the measurement follows them,
    so a loader does not score every item again (and a wrong file would show)."""
    table = clustered_table()
    queries = queries_for(table)
    other = RecallTruth(exact_top_k(clustered_table(seed=7), queries, 10),
                        RecallTruth.compute(table, queries).queries_sha256)
    index = _stored(tmp_path, table, other)
    assert measure(index, table, queries).value < 0.5 * recall_at_k(index, table, queries)


def test_other_queries_are_measured_against_exact_search(tmp_path: Path) -> None:
    table = clustered_table()
    queries = queries_for(table)
    index = _stored(tmp_path, table, RecallTruth.compute(table, queries[:100]))
    # More queries than stored: the first 100 are the stored sample.
    assert measure(index, table, queries).queries == 100
    assert measure(index, table, queries).stored
    # Other queries, or fewer than the stored sample: exact search now.
    other = queries_for(table, seed=3)
    found = measure(index, table, other)
    assert not found.stored
    assert found.value == recall_at_k(index, table, other)
    assert not measure(index, table, queries[:50]).stored
    assert not measure(index, table, queries, k=20).stored  # the stored answer has 10


@pytest.mark.parametrize("damage", ["rows out of range", "fewer rows", "not safetensors"])
def test_a_damaged_answer_is_not_used(tmp_path: Path, damage: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    from safetensors.numpy import save

    table = clustered_table()
    queries = queries_for(table)
    truth = RecallTruth.compute(table, queries)
    _stored(tmp_path, table, truth)
    rows = truth.rows.copy()
    if damage == "rows out of range":
        rows[3, 4] = len(table)
        (tmp_path / TRUTH_FILE).write_bytes(save({"rows": rows}))
    elif damage == "fewer rows":
        (tmp_path / TRUTH_FILE).write_bytes(save({"rows": rows[:-1]}))
    else:
        (tmp_path / TRUTH_FILE).write_bytes(b"garbage")
    caplog.set_level(logging.WARNING)
    index, why = load_stored(tmp_path, table, "ivf", PARAMS)
    assert index is not None, why  # the index itself is still served
    assert index.truth is None
    assert "recall is measured against exact search" in caplog.text
    assert not measure(index, table, queries).stored


def test_an_index_stored_without_an_answer_still_loads(tmp_path: Path) -> None:
    table = clustered_table()
    queries = queries_for(table)
    index = _stored(tmp_path, table, None)
    assert not (tmp_path / TRUTH_FILE).exists()
    assert "truth" not in json.loads((tmp_path / META_FILE).read_text())
    assert index.truth is None
    found = measure(index, table, queries)
    assert not found.stored
    assert found.queries == len(queries)
