"""Histories keep items the serving model does not know; a swap renumbers, never drops."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.state.changelog import decode_history, encode_rows
from streamrec.worker.state.durable import DurableHistories
from streamrec.worker.state.items import ItemTable
from streamrec.worker.state.partition import PartitionStore
from tests.unit.worker.helpers import tiny_recommender

V1 = ItemVocab(["a", "b", "c"])


def test_unknown_items_get_rows_after_the_models_and_keep_them() -> None:
    table = ItemTable(V1)
    assert table.rows(["b", "new", "a", "other", "new"]).tolist() == [2, 4, 1, 5, 4]
    assert (table.known, len(table), table.extra) == (3, 5, 2)
    assert table.external([4, 1, 5]) == ["new", "a", "other"]
    with pytest.raises(IndexError):
        table.external([6])
    assert table.rows_of_bytes([b"new", "z\u00e9".encode(), b"\xff"]).tolist() == [4, 6, -1]


def test_ids_name_every_row_while_unknown_items_keep_arriving() -> None:
    table = ItemTable(V1)
    extras = [f"new-{i}" for i in range(3000)]  # past the first buffer: it grows
    rows = table.rows(extras)
    ids = table.ids
    assert len(ids) == 3 + 3000 + 1
    assert ids[0] == ""
    assert ids[1:4].tolist() == ["a", "b", "c"]
    assert ids[rows].tolist() == extras
    assert table.model_ids.tolist() == ["", "a", "b", "c"]


def test_past_the_cap_unknown_items_are_not_kept_and_counted() -> None:
    table = ItemTable(V1, max_extra=1)
    assert table.rows(["x", "y", "x", "c", "z"]).tolist() == [4, 0, 4, 3, 0]
    assert table.dropped == 2


def test_a_new_vocabulary_renumbers_every_item_and_drops_none() -> None:
    table = ItemTable(V1, max_extra=2)
    table.rows(["x", "y"])  # rows 4, 5
    new, remap = table.for_vocab(ItemVocab(["y", "a", "d"]))
    # y is known now (row 1); a keeps being known; b, c and x follow the new model's rows.
    assert remap.tolist() == [0, 2, 4, 5, 6, 1]
    assert new.known == 3
    assert new.external(remap[1:]) == ["a", "b", "c", "x", "y"]
    assert new.extra == 3  # above the cap of 2: what was held is kept, only growth is capped
    assert new.rows(["q"]).tolist() == [0]


def test_a_prepared_table_maps_the_items_that_arrived_after_it_at_the_swap() -> None:
    v2 = ItemVocab(["y", "a", "d", "late-known"])
    table = ItemTable(V1, max_extra=10)
    table.rows(["x", "y"])
    prepared = table.prepare(v2)  # on the loader thread; the loop keeps adding items
    table.rows(["late", "late-known"])
    done = table.finish(prepared)
    new, remap = done.table, done.remap
    again = ItemTable(V1, max_extra=10)
    again.rows(["x", "y", "late", "late-known"])
    want, want_remap = again.for_vocab(v2)  # all at once, as before
    assert remap.tolist() == want_remap.tolist()
    assert new.external(remap[1:]) == ["a", "b", "c", "x", "y", "late", "late-known"]
    assert new.external(remap[1:]) == want.external(want_remap[1:])
    # Prepared from another table (e.g. a swap in between): redone, still right.
    redone = ItemTable(V1).finish(prepared)
    other, other_remap = redone.table, redone.remap
    assert other.external(other_remap[1:]) == ["a", "b", "c"]


def test_the_same_vocabulary_keeps_the_table_and_renumbers_nothing() -> None:
    table = ItemTable(V1, max_extra=10)
    table.rows(["x"])
    prepared = table.prepare(V1)  # a retrain on the same catalogue: the serving vocabulary
    table.rows(["late"])  # the loop goes on adding items meanwhile
    done = table.finish(prepared)
    new, remap = done.table, done.remap
    assert new is table
    assert remap is None
    assert new.external([4, 5]) == ["x", "late"]
    same_ids = ItemVocab(["a", "b", "c"])  # equal, but another vocabulary: renumbered
    other, other_remap = table.for_vocab(same_ids)
    assert other is not table
    assert other_remap is not None
    assert other_remap.tolist() == [0, 1, 2, 3, 4, 5]


def test_a_swap_to_the_same_vocabulary_leaves_the_histories_as_they_are(
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = DurableHistories(4, V1, bootstrap="unused:9092", group_id="g",
                             security=KafkaSecurity())
    state.apply(0, ["u", "u"], ["a", "new"], np.array([1, 2]), np.array([0, 1]))
    table = state.items
    renumbered = []
    monkeypatch.setattr(PartitionStore, "remap_items",
                        lambda self, remap, stable=0: renumbered.append(1))
    state.change_vocab(V1, table.prepare(V1))
    assert state.items is table
    assert renumbered == []
    items, _ = state.rows([(0, "u")])
    assert state.items.external(items[0, -2:]) == ["a", "new"]
    state.change_vocab(ItemVocab(["new", "a"]))
    assert len(renumbered) == 1  # one partition store, renumbered for another vocabulary


def test_a_swap_to_an_extending_vocabulary_moves_only_the_unknown_items() -> None:
    state = DurableHistories(4, V1, bootstrap="unused:9092", group_id="g",
                             security=KafkaSecurity())
    state.apply(0, ["u"] * 3, ["a", "x", "y"], np.array([1, 2, 3]), np.array([0, 1, 2]))
    items, _ = state.rows([(0, "u")])
    assert items[0, -3:].tolist() == [1, 4, 5]  # x and y unknown to V1
    grown = ItemVocab(["a", "b", "c", "y"])  # a warm-started retrain learned y
    state.change_vocab(grown, state.items.prepare(grown))
    items, _ = state.rows([(0, "u")])
    assert items[0, -3:].tolist() == [1, 5, 4]  # y is the model's row 4, x moved past it
    assert state.items.external(items[0, -3:]) == ["a", "x", "y"]


def test_prepare_in_slices_maps_every_row_as_one_lookup_would(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrec.encoder import vocab as vocab_module

    v2 = ItemVocab(["y", "a", "d", "c"])
    table = ItemTable(V1, max_extra=10)
    table.rows(["x", "y", "z"])  # 3 known + 3 unknown rows: slices of 2 split them
    whole = table.prepare(v2).remap.tolist()
    monkeypatch.setattr(vocab_module, "LOOKUP_SLICE", 2)
    assert table.prepare(v2).remap.tolist() == whole
    assert whole == [0, 2, 5, 4, 6, 1, 7]  # a b c x y z -> their rows in v2's table


def test_changelog_records_name_unknown_items_by_their_external_id() -> None:
    table = ItemTable(V1)
    rows = table.rows(["a", "fresh"])
    items = np.array([[0, rows[0], rows[1]]])
    value = encode_rows(items, np.array([[0, 5, 6]]), np.array([9]), table.id_table)[0]
    assert decode_history(value).items == ("a", "fresh")


def test_durable_histories_keep_unknown_items_across_a_swap() -> None:
    state = DurableHistories(4, V1, bootstrap="unused:9092", group_id="g",
                             security=KafkaSecurity())
    applied = state.apply(0, ["u", "u", "u"], ["a", "new", "b"], np.array([1, 2, 3]),
                          np.array([0, 1, 2]))
    assert (applied.unknown, applied.not_kept) == (1, 0)
    items, lengths = state.rows([(0, "u")])
    assert state.items.external(items[0, -3:]) == ["a", "new", "b"]
    assert lengths.tolist() == [3]
    state.change_vocab(ItemVocab(["new", "b", "a"]))
    items, _ = state.rows([(0, "u")])
    assert items[0, -3:].tolist() == [3, 1, 2]  # all known to the new model, in order
    assert state.items.extra == 1  # "c" is now the one the model lacks


def test_the_encoder_reads_only_the_items_it_knows_closed_up_in_order(tmp_path: object) -> None:
    recommender = tiny_recommender(tmp_path, V1)
    histories = np.array([[0, 1, 4, 2], [0, 0, 3, 5], [0, 0, 0, 6], [0, 0, 1, 2]])
    lengths = np.array([3, 2, 1, 2])
    known, known_lengths = recommender.known(histories, lengths)
    assert known.tolist() == [[0, 0, 1, 2], [0, 0, 0, 3], [0, 0, 0, 0], [0, 0, 1, 2]]
    assert known_lengths.tolist() == [2, 1, 0, 2]
    # Same queries as the histories without the unknown items; an all-unknown user is cold.
    recs = recommender.search(recommender.encode(known, known_lengths), known, 2)
    alone = recommender.encode(np.array([[0, 0, 1, 2]]), np.array([2]))
    np.testing.assert_allclose(recommender.encode(known, known_lengths).queries[0],
                               alone.queries[0], rtol=1e-5, atol=1e-6)
    assert recs.popular.tolist() == [False, False, True, False]
    untouched = np.array([[0, 1, 2, 3]])
    assert recommender.known(untouched, np.array([3]))[0] is untouched


@pytest.mark.parametrize("slice_size", [10_000, 2])
def test_a_vocabulary_that_extends_the_serving_one_keeps_its_rows_and_looks_up_only_extras(
        monkeypatch: pytest.MonkeyPatch, slice_size: int) -> None:
    """A warm-started retrain (the old ids first, new ones after) or the same vocabulary:
    the same table and remap as renumbering every item by id, with a million lookups
    and encodings fewer at a million items."""
    from streamrec.encoder import vocab as vocab_module
    from streamrec.worker.state import items as items_module

    monkeypatch.setattr(vocab_module, "LOOKUP_SLICE", slice_size)
    looked_up, encoded = [], []
    rows_in_slices, item_id_table = items_module.rows_in_slices, items_module.item_id_table
    monkeypatch.setattr(items_module, "rows_in_slices", lambda lookup, ids: (
        looked_up.append(len(ids)) or rows_in_slices(lookup, ids)))
    monkeypatch.setattr(items_module, "item_id_table",
                        lambda ids: encoded.append(len(ids)) or item_id_table(ids))
    for v2 in (ItemVocab(["a", "b", "c", "x", "d"]), ItemVocab(["a", "b", "c"])):
        table = ItemTable(V1, max_extra=10)
        table.rows(["x", "y", "z"])  # rows 4, 5, 6
        looked_up.clear()
        encoded.clear()
        new, remap = table.for_vocab(v2)
        assert sum(looked_up) == 2 * 3  # the three extras, twice; none of the model's rows
        assert sum(encoded) == len(v2) - len(V1) + new.extra  # not V1's rows again
        with monkeypatch.context() as renumber_all:
            renumber_all.setattr(ItemVocab, "extends", lambda self, other: False)
            want, want_remap = table.for_vocab(v2)  # every item renumbered by its id
        assert remap.tolist() == want_remap.tolist()
        assert new.ids.tolist() == want.ids.tolist()
        assert new.id_table == want.id_table
        assert (new.known, new.extra) == (want.known, want.extra)
        assert new.external(remap[1:]) == ["a", "b", "c", "x", "y", "z"]
