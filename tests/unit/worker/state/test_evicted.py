"""The eviction index: a dict's behaviour at a fraction of a dict's memory."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.worker.state.evicted import EvictedIndex


def test_pop_returns_each_evicted_users_offset_once_across_merges() -> None:
    index = EvictedIndex(buffer_size=8)
    index.add((f"u{i}", 10 * i) for i in range(100))  # several merges
    assert len(index) == 100
    assert index.pop(["u3", "u77", "nobody", "u3"]) == {"u3": 30, "u77": 770}
    assert len(index) == 98
    assert index.pop(["u3", "u77"]) == {}  # popped entries are gone (tombstones)
    index.add([("u3", 999)])  # evicted again with a newer record
    assert index.pop(["u3"]) == {"u3": 999}


def test_an_empty_index_finds_nobody() -> None:
    assert EvictedIndex().pop(["a", "b"]) == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "pop"]),
                          st.lists(st.integers(0, 40), max_size=12)), max_size=40),
       st.integers(1, 6))
def test_behaves_like_a_dict(ops: list[tuple[str, list[int]]], buffer_size: int) -> None:
    """Against a plain dict, through adds, pops and merges in any order. As in the worker,
    only users not in the index are added (an evicted user must come back first)."""
    index, model = EvictedIndex(buffer_size=buffer_size), {}
    offset = 0
    for op, users in ops:
        names = [f"user-{u}" for u in users]
        if op == "add":
            fresh = [n for n in dict.fromkeys(names) if n not in model]
            entries = [(n, offset + i) for i, n in enumerate(fresh)]
            offset += len(entries)
            index.add(entries)
            model.update(entries)
        else:
            expected = {n: model.pop(n) for n in set(names) if n in model}
            assert index.pop(names) == expected
        assert len(index) == len(model)


def test_a_million_evicted_users_cost_about_16_bytes_each() -> None:
    index = EvictedIndex()
    users = [f"user-{i:08d}" for i in range(1_000_000)]
    for start in range(0, len(users), 10_000):  # evicted a commit interval at a time
        index.add((u, start + i) for i, u in enumerate(users[start:start + 10_000]))
    assert len(index) == 1_000_000
    assert index.nbytes() / len(index) <= 20, index.nbytes()
    sample = random.Random(0).sample(range(1_000_000), 1000)
    assert index.pop([users[i] for i in sample]) == {users[i]: i for i in sample}
