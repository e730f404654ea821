"""Settling the heap: frozen objects leave the collector's passes until the next settle."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamrec.encoder.vocab import ItemVocab
from streamrec.worker import heap
from tests.unit.worker.helpers import tiny_recommender


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    yield
    heap.thaw()


def test_settled_objects_are_out_of_full_passes_until_the_next_settle() -> None:
    node = Node()
    gone = weakref.ref(node)
    assert heap.settle("test") == gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert gone() is not None  # frozen: a full pass does not walk it
    heap.settle("model swap")  # thaws, collects, freezes what is alive now
    assert gone() is None


def test_thaw_hands_frozen_objects_back() -> None:
    heap.settle("test")
    heap.thaw()
    assert gc.get_freeze_count() == 0


def test_freeze_new_freezes_without_a_collection() -> None:
    heap.settle("serving")
    before = gc.get_freeze_count()
    node = Node()
    gone = weakref.ref(node)
    del node  # cyclic garbage made before the swap's freeze
    heap.freeze_new("model swap")
    assert gc.get_freeze_count() > before
    assert gone() is not None  # no collection ran: the swap did not walk the heap


def test_a_dropped_recommender_is_freed_without_the_cyclic_collector(tmp_path: Path) -> None:
    """What lets a model swap skip the full pass: the old model goes by reference
    counting alone, even when it was frozen."""
    served = tiny_recommender(tmp_path, ItemVocab([f"i{n}" for n in range(30)]), max_len=8,
                              hidden=16, blocks=2, heads=2)
    parts = [weakref.ref(x) for x in (served, served.checkpoint, served.checkpoint.model,
                                      served.index)]
    heap.settle("serving")
    gc.disable()
    try:
        del served
        assert [p() for p in parts] == [None] * len(parts)
    finally:
        gc.enable()


class Holder:
    def __init__(self, size: int) -> None:
        self.ids = [f"i{n}" for n in range(size)]
        self.index = {item: n for n, item in enumerate(self.ids)}
        self.table = np.array(["", *self.ids], dtype=object)
        self.inner = Inner(size)


class Inner:
    def __init__(self, size: int) -> None:
        self.encoded = [item.encode() for item in (f"i{n}" for n in range(size))]


def test_release_later_takes_large_containers_apart_and_leaves_small_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "RELEASE_SLICE", 100)
    big, small = Holder(1_000), Holder(50)
    ids, index, table, encoded = big.ids, big.index, big.table, big.inner.encoded
    assert heap.release_later(big, small).wait(timeout=10)
    assert (ids, index, encoded) == ([], {}, [])
    assert all(x is None for x in table)
    assert len(small.ids) == len(small.index) == len(small.inner.encoded) == 50


def test_release_later_leaves_what_the_serving_objects_still_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "RELEASE_SLICE", 100)
    old, new = Holder(1_000), Holder(10)
    new.inner = old.inner  # the new model serves the old one's vocabulary
    deep = new
    for _ in range(heap.RELEASE_DEPTH + 1):
        deep.deeper = deep = Holder(10)
    deep.ids = old.ids  # shared further down than RELEASE_DEPTH
    assert heap.release_later(old, keep=(new,)).wait(timeout=10)
    assert len(new.inner.encoded) == len(deep.ids) == 1_000
    assert old.index == {}
    assert all(x is None for x in old.table)
