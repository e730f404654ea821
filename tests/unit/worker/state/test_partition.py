"""Rolling histories: bounded length, arrival order, unknown items, many users at once."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.state.durable import DurableHistories
from streamrec.worker.state.partition import PartitionStore

OFFSET = iter(range(10**9))


def append(store: PartitionStore, pairs: list[tuple[str, int]]) -> None:
    users = [u for u, _ in pairs]
    items = np.array([i for _, i in pairs])
    offsets = np.array([next(OFFSET) for _ in pairs])
    store.append(users, items, items * 10, offsets)


def test_keeps_last_items_in_arrival_order_and_bounds_length() -> None:
    store = PartitionStore(max_len=3)
    append(store, [("a", 1), ("b", 9), ("a", 2)])
    append(store, [("a", 3), ("a", 4)])
    items, ts = store.history("a")
    assert items.tolist() == [2, 3, 4]
    assert ts.tolist() == [20, 30, 40]
    assert store.history("b")[0].tolist() == [9]


def test_more_new_items_than_max_len_in_one_append() -> None:
    store = PartitionStore(max_len=2)
    append(store, [("a", 1), ("a", 2), ("a", 3), ("a", 4), ("a", 5)])
    assert store.history("a")[0].tolist() == [4, 5]


def test_rows_are_left_padded_batch_layout() -> None:
    store = PartitionStore(max_len=4)
    append(store, [("a", 5), ("a", 6), ("b", 7)])
    rows, lengths = store.rows(["b", "a", "nobody"])
    assert rows.tolist() == [[0, 0, 0, 7], [0, 0, 5, 6], [0, 0, 0, 0]]
    assert lengths.tolist() == [1, 2, 0]


def test_unknown_items_are_not_stored_but_user_exists() -> None:
    store = PartitionStore(max_len=3)
    append(store, [("a", 0), ("a", 4), ("a", 0)])
    assert store.history("a")[0].tolist() == [4]
    append(store, [("new", 0)])
    assert "new" in store
    assert store.rows(["new"])[1].tolist() == [0]


def test_grows_past_initial_capacity_without_losing_users() -> None:
    store = PartitionStore(max_len=2, initial_capacity=2)
    users = [f"u{i}" for i in range(100)]
    store.append(users, np.arange(1, 101), np.arange(100), np.arange(100))
    store.append(users, np.arange(101, 201), np.arange(100), np.arange(100, 200))
    assert len(store) == 100
    rows, _ = store.rows(users)
    assert rows[:, 0].tolist() == list(range(1, 101))
    assert rows[:, 1].tolist() == list(range(101, 201))


def test_matches_a_plain_python_reference_on_random_streams() -> None:
    rng = np.random.default_rng(0)
    store = PartitionStore(max_len=5, initial_capacity=4)
    reference: dict[str, list[int]] = {}
    for _ in range(50):
        n = int(rng.integers(1, 40))
        users = [f"u{u}" for u in rng.integers(0, 20, n)]
        items = rng.integers(0, 30, n)
        store.append(users, items, items, np.array([next(OFFSET) for _ in users]))
        for u, i in zip(users, items, strict=True):
            reference.setdefault(u, [])
            if i > 0:
                reference[u] = (reference[u] + [int(i)])[-5:]
    for user, expected in reference.items():
        assert store.history(user)[0].tolist() == expected


def test_partitions_are_independent_and_droppable() -> None:
    # No broker is contacted until the changelog is read or written.
    parts = DurableHistories(2, ItemVocab(["x", "y", "z"]), bootstrap="unused:9092",
                             group_id="g", security=KafkaSecurity())
    parts.store(0).append(["a"], np.array([1]), np.array([1]), np.array([0]))
    parts.store(1).append(["b", "c"], np.array([2, 3]), np.array([1, 1]), np.array([0, 1]))
    assert parts.num_users() == 3
    items, lengths = parts.rows([(1, "c"), (0, "a"), (0, "c")])
    assert items.tolist() == [[0, 3], [0, 1], [0, 0]]  # "c" lives in partition 1 only
    assert lengths.tolist() == [1, 1, 0]
    assert parts.drop(1) == 2
    assert [p for p, _ in parts.stores()] == [0]
    assert parts.num_users() == 1


def test_replayed_events_at_or_below_the_applied_offset_are_not_applied_twice() -> None:
    store = PartitionStore(max_len=5)
    fresh = store.append(["a", "a", "b"], np.array([1, 2, 3]), np.zeros(3), np.array([10, 11, 12]))
    assert fresh.tolist() == [True, True, True]
    # A crash replays from offset 11: 11 and 12 were applied, 13 is new.
    fresh = store.append(["a", "b", "a"], np.array([2, 3, 4]), np.zeros(3), np.array([11, 12, 13]))
    assert fresh.tolist() == [False, False, True]
    assert store.history("a")[0].tolist() == [1, 2, 4]
    assert store.history("b")[0].tolist() == [3]
    assert store.applied_offset("a") == 13


def test_unknown_items_advance_the_offset_without_being_stored() -> None:
    store = PartitionStore(max_len=3)
    store.append(["a"], np.array([0]), np.zeros(1), np.array([7]))
    assert store.applied_offset("a") == 7
    assert store.take_dirty_of(["a"]) == []


def test_dirty_users_are_reported_once_and_export_loads_back() -> None:
    store = PartitionStore(max_len=3)
    append(store, [("a", 1), ("b", 2), ("a", 3)])
    assert store.take_dirty_of(["b", "a", "nobody"]) == ["b", "a"]
    assert store.take_dirty_of(["a", "b"]) == []
    items, ts, offsets = store.export(["a", "b"])
    other = PartitionStore(max_len=3)
    other.load(["a", "b"], items, ts, offsets)
    assert other.history("a")[0].tolist() == [1, 3]
    assert other.applied_offset("b") == store.applied_offset("b")
    assert other.take_dirty_of(["a", "b"]) == []


def test_evicts_least_recently_active_users_already_in_the_changelog() -> None:
    store = PartitionStore(max_len=2, initial_capacity=2)
    append(store, [("a", 1)])
    append(store, [("b", 2)])
    append(store, [("c", 3)])
    append(store, [("z", 9)])
    store.take_dirty_of(["a", "b", "c", "z"])
    for offset, user in enumerate(["a", "b", "c"]):  # z's record was never acknowledged
        store.note_written(user, 100 + offset)
    append(store, [("a", 4)])  # a is active again, and dirty: never evicted while dirty
    assert store.evict(max_users=2) == [("b", 101), ("c", 102)]
    assert "a" in store
    assert "z" in store
    assert "b" not in store
    append(store, [("d", 5), ("e", 6)])  # freed slots are reused
    assert store.history("d")[0].tolist() == [5]
    assert store.history("a")[0].tolist() == [1, 4]


def test_a_user_whose_latest_record_is_unacknowledged_is_never_evicted() -> None:
    """Acks arrive after later records are sent: the ack of an older record must not
    make the user evictable, or a read-back would lose the events of the newer one."""
    store = PartitionStore(max_len=3)
    append(store, [("a", 1), ("b", 2)])
    assert store.take_dirty_of(["a", "b"]) == ["a", "b"]
    store.mark_sent(["a", "b"], first_seq=10)  # records 10 (a) and 11 (b)
    append(store, [("a", 3)])
    assert store.take_dirty_of(["a"]) == ["a"]
    store.mark_sent(["a"], first_seq=12)  # a's newer record, not yet acknowledged
    store.note_written("a", 100, seq=10)  # the older record's ack arrives
    store.note_written("b", 101, seq=11)
    assert store.evict(max_users=0) == [("b", 101)]
    store.note_written("a", 102, seq=12)
    assert store.evict(max_users=0) == [("a", 102)]


def test_events_are_judged_against_the_last_recommendation_their_user_was_sent() -> None:
    store = PartitionStore(max_len=4)
    store.append(["a", "b", "c"], np.array([1, 2, 3]), np.array([10, 11, 12]),
                 np.array([0, 1, 2]))
    assert store.judge(["a", "b"], np.array([5, 6])).tolist() == [-2, -2]  # nothing sent
    store.recommended(["a", "b", "zed"], np.array([[5, 6, 7], [8, 9, -1], [1, 2, 3]]))
    # a's 6 is second in its list, b's 5 is not in its list, c was never sent one.
    assert store.judge(["a", "b", "c", "a"], np.array([6, 5, 7, 5])).tolist() == [1, -1, -2, 0]
    store.recommended(["a"], np.array([[1, 2, 3]]))  # a newer recommendation replaces it
    assert store.judge(["a"], np.array([6])).tolist() == [-1]


def test_what_was_recommended_is_forgotten_on_eviction_and_load() -> None:
    store = PartitionStore(max_len=4, initial_capacity=2)
    store.append(["a", "b", "c"], np.array([1, 2, 3]), np.array([1, 2, 3]), np.array([0, 1, 2]))
    store.recommended(["a", "b", "c"], np.array([[7], [7], [7]]))  # grown past capacity
    assert store.judge(["a", "b", "c"], np.array([7, 7, 7])).tolist() == [0, 0, 0]
    store.load(["a"], np.array([[0, 0, 0, 1]]), np.array([[0, 0, 0, 1]]), np.array([5]))
    assert store.judge(["a"], np.array([7])).tolist() == [-2]
    for user, offset in (("b", 10), ("c", 11)):
        store.note_written(user, offset)
    store.take_dirty_of(["a", "b", "c"])
    gone = dict(store.evict(1))
    assert gone
    store.append(list(gone), np.array([4] * len(gone)), np.array([9] * len(gone)),
                 np.array([20 + i for i in range(len(gone))]))
    assert store.judge(list(gone), np.array([7] * len(gone))).tolist() == [-2] * len(gone)


def test_remapping_to_a_new_vocabulary_keeps_order_and_closes_up_dropped_items() -> None:
    store = PartitionStore(max_len=4)
    store.append(["a"] * 3, np.array([1, 2, 3]), np.array([10, 11, 12]), np.array([0, 1, 2]))
    store.recommended(["a"], np.array([[3, 2, -1]]))
    remap = np.array([0, 5, 0, 7])  # old row 1 -> 5, 2 -> gone, 3 -> 7
    store.remap_items(remap)
    items, ts = store.history("a")
    assert items.tolist() == [5, 7]
    assert ts.tolist() == [10, 12]
    assert store.applied_offset("a") == 2
    assert store.judge(["a", "a"], np.array([7, 2])).tolist() == [0, -1]  # 2 left its list


def test_remapping_that_drops_nothing_renumbers_in_place() -> None:
    store = PartitionStore(max_len=4)
    store.append(["a"] * 3, np.array([1, 2, 3]), np.array([10, 11, 12]), np.array([0, 1, 2]))
    store.append(["b"], np.array([2]), np.array([13]), np.array([3]))
    store.remap_items(np.array([0, 3, 1, 2]))  # every old row has a new one
    assert [store.history(u)[0].tolist() for u in "ab"] == [[3, 1, 2], [1]]
    assert store.history("a")[1].tolist() == [10, 11, 12]
    assert store.rows(["a", "b"])[1].tolist() == [3, 1]


def test_remapping_past_a_stable_prefix_renumbers_only_the_rows_above_it() -> None:
    """A vocabulary that extends the serving one keeps rows 1..V; only the rows of items
    the old model did not know (V+1, ...) move."""
    store = PartitionStore(max_len=4)
    store.append(["a"] * 3, np.array([1, 4, 3]), np.array([10, 11, 12]), np.array([0, 1, 2]))
    store.append(["b"], np.array([5]), np.array([13]), np.array([3]))
    store.recommended(["a", "b"], np.array([[4, 2], [1, 5]]))
    remap = np.array([0, 1, 2, 3, 6, 4])  # V = 3 -> 4: item 5 is known now, item 4 moves
    store.remap_items(remap, stable=3)
    assert [store.history(u)[0].tolist() for u in "ab"] == [[1, 6, 3], [4]]
    assert store.judge(["a", "b"], np.array([6, 4])).tolist() == [0, 1]
    whole = PartitionStore(max_len=4)  # the same without the prefix: the same rows
    whole.append(["a"] * 3, np.array([1, 4, 3]), np.array([10, 11, 12]), np.array([0, 1, 2]))
    whole.append(["b"], np.array([5]), np.array([13]), np.array([3]))
    whole.remap_items(remap)
    assert [whole.history(u)[0].tolist() for u in "ab"] == [[1, 6, 3], [4]]


def test_changes_taken_at_a_cut_hold_that_state_and_keep_the_user_until_written() -> None:
    store = PartitionStore(max_len=3)
    append(store, [("a", 1), ("b", 2)])
    store.take_changes(["a", "b"])
    store.mark_sent(["a", "b"], first_seq=0)
    store.note_written("a", 50, seq=0)
    store.note_written("b", 51, seq=1)
    append(store, [("a", 3)])
    users, items, _, offsets = store.take_changes(["a", "b"])  # the batch is cut
    assert users == ["a"]
    assert items[0].tolist() == [0, 1, 3]
    append(store, [("a", 4)])  # arrives while the batch is in the model
    assert items[0].tolist() == [0, 1, 3]  # the taken state is what the batch answers
    store.note_written("a", 50, seq=0)  # a late ack of a's older record changes nothing
    assert store.evict(max_users=0) == [("b", 51)]  # a is in flight: not evictable
    store.mark_sent(["a"], first_seq=2)  # the batch is published
    store.note_written("a", 52, seq=2)
    assert store.take_dirty_of(["a"]) == ["a"]  # event 4 waits for a's next record
    assert offsets[0] < store.applied_offset("a")


def test_a_reserved_store_loads_many_users_in_one_growth_and_repeats_share_a_slot() -> None:
    store = PartitionStore(max_len=2, initial_capacity=2)
    append(store, [("kept", 3)])
    store.reserve(1000)
    room = store.nbytes()
    users = [f"u{i}" for i in range(1000)]
    store.load(users, np.tile([[0, 7]], (1000, 1)), np.tile([[0, 70]], (1000, 1)),
               np.arange(1000))
    assert store.nbytes() == room  # no second growth
    assert len(store) == 1001
    assert store.history("kept")[0].tolist() == [3]
    assert store.history("u999")[0].tolist() == [7]
    slots = store.slots_for(["u5", "new", "u5", "new"])
    assert slots.tolist() == [slots[0], slots[1], slots[0], slots[1]]
    assert slots[0] != slots[1]
    assert len(store) == 1002


def test_forgotten_users_leave_and_their_slots_serve_new_ones() -> None:
    store = PartitionStore(max_len=2, initial_capacity=2)
    append(store, [("a", 1), ("b", 2)])
    store.forget(["a", "nobody"])
    assert "a" not in store
    assert len(store) == 1
    append(store, [("c", 3)])  # takes a's slot: no growth, nothing of a's left
    assert store.nbytes() == PartitionStore(max_len=2, initial_capacity=2).nbytes()
    assert store.history("c")[0].tolist() == [3]
    assert store.history("b")[0].tolist() == [2]


def test_the_first_append_imports_nothing_in_the_poll_loop() -> None:
    """A module imported by the serving path's first call costs the poll loop its import
    (numpy.ma: 6-30 ms): importing the store imports it beforehand."""
    code = ("import sys\nfrom streamrec.worker.state.partition import PartitionStore\n"
            "store = PartitionStore(max_len=4)\nbefore = set(sys.modules)\n"
            "store.append(['a', 'b', 'a'], [1, 2, 3], [1, 2, 3], [0, 1, 2])\n"
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
