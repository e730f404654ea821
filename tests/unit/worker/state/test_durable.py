"""DurableHistories: read from other threads (the /metrics server counts users), and
the live quality sample `apply` returns (judged, hits, NDCG@k), replays left out."""

from __future__ import annotations

import math
import sys
import threading

import numpy as np
import pytest

from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.state.durable import Applied, DurableHistories


def test_users_are_counted_while_partitions_come_and_go() -> None:
    # The metrics server's thread calls num_users while the poll loop creates stores
    # (an assignment) and drops them (a revocation): the count must never fail.
    state = DurableHistories(4, ItemVocab(["a"]), bootstrap="unused:9092", group_id="g",
                             security=KafkaSecurity())
    errors: list[BaseException] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            try:
                state.num_users()
            except RuntimeError as exc:  # "dictionary changed size during iteration"
                errors.append(exc)
                return

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    reader = threading.Thread(target=count)
    reader.start()
    try:
        for _ in range(100):
            for partition in range(64):
                state.store(partition)
            for partition in range(64):
                state.drop(partition)
            if errors:
                break
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(switch)
    assert errors == []


def histories() -> DurableHistories:
    """Histories over items a..f, no broker needed: nothing is evicted or restored."""
    return DurableHistories(4, ItemVocab(list("abcdef")), bootstrap="unused:9092",
                            group_id="g", security=KafkaSecurity())


def apply(state: DurableHistories, events: list[tuple[str, str, int]]) -> Applied:
    """Apply (user, item, offset) events of partition 0."""
    users, items, offsets = zip(*events, strict=True)
    return state.apply(0, list(users), list(items), np.arange(len(events), dtype=np.int64),
                       np.asarray(offsets, dtype=np.int64))


def recommend(state: DurableHistories, sent: dict[str, str]) -> None:
    """Send each user the items of its string in that order (rank 1 first)."""
    users = [(0, user) for user in sent]
    state.recommended(users, np.stack([state.items.rows(list(s)) for s in sent.values()]))


def test_each_new_event_is_judged_against_the_last_recommendation() -> None:
    state = histories()
    first = apply(state, [("u", "a", 0), ("v", "b", 1), ("w", "c", 2)])
    assert (first.judged, first.hits, first.ndcg) == (0, 0, 0.0)  # nothing sent yet
    recommend(state, {"u": "abc", "v": "def", "w": "cab"})
    # u takes its first item, v its second, w none of its three, x was never sent one.
    applied = apply(state, [("u", "a", 3), ("v", "e", 4), ("w", "f", 5), ("x", "a", 6)])
    assert applied.fresh.tolist() == [True, True, True, True]
    assert applied.judged == 3
    assert applied.hits == 2
    assert applied.ndcg == pytest.approx(1.0 + 1.0 / math.log2(3))


def test_a_hit_at_rank_2_is_worth_one_over_log2_3() -> None:
    state = histories()
    apply(state, [("u", "a", 0)])
    recommend(state, {"u": "bcd"})
    applied = apply(state, [("u", "c", 1)])
    assert (applied.judged, applied.hits) == (1, 1)
    assert applied.ndcg == pytest.approx(1.0 / math.log2(3))  # 0.6309...


def test_a_replayed_event_is_not_judged_again() -> None:
    state = histories()
    apply(state, [("u", "a", 0), ("u", "b", 1)])
    recommend(state, {"u": "abc"})
    # A rewind or a restart re-reads offsets 0 and 1: applied before, so neither counts,
    # though both items are in the recommendation.
    replay = apply(state, [("u", "a", 0), ("u", "b", 1)])
    assert replay.fresh.tolist() == [False, False]
    assert (replay.judged, replay.hits, replay.ndcg) == (0, 0, 0.0)
    # In one poll with a new event: only the new one is judged.
    mixed = apply(state, [("u", "b", 1), ("u", "a", 2)])
    assert mixed.fresh.tolist() == [False, True]
    assert (mixed.judged, mixed.hits, mixed.ndcg) == (1, 1, pytest.approx(1.0))
