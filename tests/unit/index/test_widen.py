"""An IVF index without an asked --nprobe searches as many lists as its recall on the
model's queries needs: the fewest of DEFAULT_NPROBE x NPROBE_GROWTH^n that reach the
target; the build stores that choice, and a loader serves it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from streamrec.index.ann import AnnIndex
from streamrec.index.params import DEFAULT_NPROBE, NPROBE_GROWTH, AnnParams
from streamrec.index.recall import measure, recall_at_k
from streamrec.index.store import META_FILE, index_files, load_stored

from .test_ann import clustered_table, queries_for

TARGET = 0.9
NLIST = 100


@pytest.fixture(scope="module")
def hard() -> tuple[np.ndarray, np.ndarray]:
    """Items with no cluster structure: 16 of 100 lists find about a third of the top 10."""
    table = clustered_table(items=4000, clusters=1)
    return table, queries_for(table, n=300)


def ladder(nlist: int) -> list[int]:
    steps = [min(nlist, DEFAULT_NPROBE)]
    while steps[-1] < nlist:
        steps.append(min(nlist, math.ceil(steps[-1] * NPROBE_GROWTH)))
    return steps


def test_an_unasked_nprobe_widens_to_the_first_step_that_reaches_the_target(
        hard: tuple[np.ndarray, np.ndarray]) -> None:
    table, queries = hard
    index = AnnIndex(table, "ivf", AnnParams(nlist=NLIST))
    assert index.params.nprobe == DEFAULT_NPROBE
    found = measure(index, table, queries, target=TARGET)
    steps = ladder(NLIST)
    chosen = index.params.nprobe
    assert found.value >= TARGET
    assert found.widened == steps.index(chosen) >= 1
    assert found.value == recall_at_k(index, table, queries)  # what it serves at now
    below = AnnIndex(table, "ivf", AnnParams(nlist=NLIST, nprobe=steps[found.widened - 1]))
    assert recall_at_k(below, table, queries) < TARGET  # the step before was not enough


def test_an_asked_nprobe_is_kept_whatever_its_recall(
        hard: tuple[np.ndarray, np.ndarray]) -> None:
    table, queries = hard
    index = AnnIndex(table, "ivf", AnnParams(nlist=NLIST, nprobe=DEFAULT_NPROBE))
    found = measure(index, table, queries, target=TARGET)
    assert (found.widened, index.params.nprobe) == (0, DEFAULT_NPROBE)
    assert found.value < TARGET


def test_the_other_kinds_never_widen(hard: tuple[np.ndarray, np.ndarray]) -> None:
    table, _ = hard
    for kind, params in (("hnsw", AnnParams(ef_search=16)), ("sq8", AnnParams())):
        index = AnnIndex(table, kind, params)
        assert not index.widen()
        assert index.params == params.resolved(len(table) - 1, table.shape[1], kind)
    every = AnnIndex(table, "ivf-sq8", AnnParams(nlist=8))  # 16 > 8 lists: all searched
    assert every.params.nprobe == 8
    assert not every.widen()


def test_the_chosen_nprobe_is_stored_and_served(
        hard: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    table, queries = hard
    index = AnnIndex(table, "ivf", AnnParams(nlist=NLIST))
    measure(index, table, queries, target=TARGET)
    chosen = index.params.nprobe
    for name, content in index_files(index, table, recall=0.9).items():
        (tmp_path / name).write_bytes(content)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert (meta["nprobe_tuned"], meta["params"]["nprobe"]) == (True, chosen)
    served, why = load_stored(tmp_path, table, "ivf", AnnParams())
    assert served is not None, why
    assert served.params.nprobe == chosen > DEFAULT_NPROBE
    asked, _ = load_stored(tmp_path, table, "ivf", AnnParams(nprobe=3))
    assert asked is not None
    assert asked.params.nprobe == 3  # an asked --nprobe wins over the stored choice
    assert not asked.widen()
    assert served.widen()  # a higher --min-recall at load may still widen it


def test_widening_stops_where_more_lists_buy_no_recall(
        hard: tuple[np.ndarray, np.ndarray]) -> None:
    """One-byte PQ codes ranked by their own scores cap recall near 0.14 however many
    lists are searched: the first step gains nothing, is undone, and the index keeps
    its 16 lists."""
    table, queries = hard
    index = AnnIndex(table, "ivf-pq", AnnParams(nlist=NLIST, pq_m=1, rescore=1))
    found = measure(index, table, queries, target=TARGET)
    assert (found.widened, index.params.nprobe) == (0, DEFAULT_NPROBE)
    assert found.value == recall_at_k(index, table, queries) < 0.5
