"""ItemVocab: rows 1..V for external ids, 0 for padding/unknown, a stable JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.vocab import ItemVocab


def test_rows_start_at_one_and_unknown_is_padding() -> None:
    vocab = ItemVocab(["a", "b", "c"])
    assert len(vocab) == 3
    assert vocab.row("a") == 1
    assert vocab.row("c") == 3
    assert vocab.row("zzz") == 0
    np.testing.assert_array_equal(vocab.rows(["c", "nope", "a"]), [3, 0, 1])
    assert vocab.rows(["c"]).dtype == np.int64
    assert vocab.external([3, 1]) == ["c", "a"]


def test_int_ids_are_their_decimal_strings() -> None:
    vocab = ItemVocab(["42", "7"])
    assert vocab.row(42) == 1
    np.testing.assert_array_equal(vocab.rows([7, 42, 99]), [2, 1, 0])
    np.testing.assert_array_equal(vocab.rows(np.array([7, 42])), [2, 1])
    np.testing.assert_array_equal(vocab.rows(x for x in ("7", 42)), [2, 1])
    assert 42 in vocab
    assert "8" not in vocab


def test_padding_row_has_no_external_id() -> None:
    with pytest.raises(IndexError):
        ItemVocab(["a"]).external([0])


def test_duplicates_and_non_strings_are_rejected() -> None:
    with pytest.raises(DataFormatError, match="duplicate"):
        ItemVocab(["a", "b", "a"])
    with pytest.raises(DataFormatError, match="strings"):
        ItemVocab(["a", 3])  # type: ignore[list-item]


def test_build_orders_integer_ids_numerically_else_by_first_appearance() -> None:
    assert ItemVocab.build(["10", "2", 1, "2"]).ids == ["1", "2", "10"]
    assert ItemVocab.build(["b", "a", "b", "10"]).ids == ["b", "a", "10"]
    # "007" is not the integer 7: keep such ids in first-appearance order.
    assert ItemVocab.build(["9", "007"]).ids == ["9", "007"]


def test_json_round_trip_through_text() -> None:
    vocab = ItemVocab(["x", "y", "ü"])
    text = json.dumps(vocab.to_json())
    assert ItemVocab.from_json(text) == vocab
    assert ItemVocab.from_json(json.loads(text)) == vocab


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        json.dumps(["a", "b"]),
        json.dumps({"format": "streamrec.item_vocab", "version": 99, "items": []}),
        json.dumps({"format": "streamrec.item_vocab", "version": 1, "items": ["a", "a"]}),
    ],
)
def test_from_json_rejects_foreign_or_broken_documents(doc: str) -> None:
    with pytest.raises(DataFormatError):
        ItemVocab.from_json(doc)


@pytest.mark.parametrize("awkward", [
    ['a", "b', "c\\", 'd\\", "e', '"', "\\\\", "ü", ""],  # quotes, backslashes, escapes
    [", "],  # written `", "`: a cut after its opening quote must not split it
])
def test_a_large_vocabulary_is_parsed_in_slices_to_the_same_ids(
        monkeypatch: pytest.MonkeyPatch, awkward: list[str]) -> None:
    from streamrec.encoder import vocab as vocab_module

    ids = [f"id{n}" for n in range(2_000)]
    for at in (3, 500, 1_500):
        ids[at:at] = [f"{a}{at}" if a != ", " else a for a in awkward] if at != 500 else awkward
    ids = list(dict.fromkeys(ids))
    text = json.dumps(ItemVocab(ids).to_json())
    calls = []
    real = json.loads
    monkeypatch.setattr(vocab_module.json, "loads", lambda s: calls.append(len(s)) or real(s))
    monkeypatch.setattr(vocab_module, "SLICE_CHARS", 97)
    assert ItemVocab.from_json(text).ids == ids
    assert len(calls) > 10  # sliced (or, for `", "`, sliced then parsed whole)
    assert max(calls) <= (len(text) if ", " in ids else 200)


@pytest.mark.parametrize("slice_size", [10_000, 2])
def test_a_vocabulary_that_begins_with_its_base_copies_the_bases_lookup(
        monkeypatch: pytest.MonkeyPatch, slice_size: int) -> None:
    from streamrec.encoder import vocab as vocab_module

    monkeypatch.setattr(vocab_module, "LOOKUP_SLICE", slice_size)
    base = ItemVocab(["a", "b", "c", "d", "e"])
    for ids in (["a", "b", "c", "d", "e", "f", "g"], ["a", "b", "c", "d", "e"]):
        grown = ItemVocab(ids, base=base)
        assert grown.reused == len(base)
        assert grown == ItemVocab(ids)
        assert grown.rows([*ids, "zz"]).tolist() == [*range(1, len(ids) + 1), 0]
        assert grown.extends(base)
    assert base.rows(["f"]).tolist() == [0]  # the base's own lookup is left as it was
    # Not beginning with the base (reordered, shorter, or another id): built whole.
    for ids in (["b", "a", "c", "d", "e", "f"], ["a", "b", "c"], ["a", "b", "c", "d", "x"]):
        other = ItemVocab(ids, base=base)
        assert other.reused == 0
        assert other == ItemVocab(ids)
        assert not other.extends(base)
    # What the constructor refuses, it refuses after a copied lookup too.
    with pytest.raises(DataFormatError, match="1 duplicate ids"):
        ItemVocab(["a", "b", "c", "d", "e", "a"], base=base)
    with pytest.raises(DataFormatError, match="entry 5 is int"):
        ItemVocab(["a", "b", "c", "d", "e", 6], base=base)  # type: ignore[list-item]
    from_text = ItemVocab.from_json(json.dumps(ItemVocab([*"abcdefg"]).to_json()), base)
    assert from_text.reused == len(base)
