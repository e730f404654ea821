"""The streams `bench e2e` measures on."""

from __future__ import annotations

import numpy as np

from streamrec.bench.contenders import Stream, distinct_rounds


def test_distinct_rounds_spaces_each_users_events_a_whole_round_apart() -> None:
    # u1..u3 have 3+ events, u4 only 2: it is left out at positions=3
    users = ["u1", "u2", "u3", "u4", "u1", "u4", "u2", "u3", "u1", "u3", "u2", "u1"]
    items = [f"{u}-{i}" for i, u in enumerate(users)]
    stream = Stream(users, items, 100 + np.arange(len(users)), "test")
    rounds = distinct_rounds(stream, positions=3)
    assert rounds.users == ["u1", "u2", "u3"] * 3
    # each user's own events, in their order, and no more than `positions` of them
    assert [i for u, i in zip(rounds.users, rounds.items, strict=True) if u == "u1"] == [
        "u1-0", "u1-4", "u1-8"]
    assert rounds.ts.tolist() == list(range(100, 109))


def test_distinct_rounds_of_a_short_prefix_take_the_rounds_there_are() -> None:
    stream = Stream(["a", "b", "c", "a"], ["1", "2", "3", "4"], np.arange(4), "test")
    assert distinct_rounds(stream, positions=5).users == ["a", "a"]
    assert distinct_rounds(Stream([], [], np.zeros(0, np.int64), "empty")).users == []
