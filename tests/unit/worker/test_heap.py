"""Settling the heap: frozen objects leave the collector's passes until the next settle."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streamrec.worker import heap


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
