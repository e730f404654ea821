"""The item contract: what an items-topic record may be, and the reason given for what
it may not; catalogue-file lines are held to the same rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.worker.item_records import (
    MAX_CATEGORIES,
    MAX_VECTOR_DIMS,
    ItemFeatures,
    ItemRecord,
    item_line,
    parse_item_record,
)
from streamrec.worker.validate import Invalid, Limits

LIMITS = Limits(max_record_bytes=4096, max_id_chars=16)


def parse(key: bytes | None, value: bytes | None) -> ItemRecord | Invalid:
    return parse_item_record(key, value, LIMITS)


def doc(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def reason(result: ItemRecord | Invalid) -> str:
    assert isinstance(result, Invalid), result
    return result.reason


def test_a_full_record_keeps_its_features() -> None:
    got = parse(b"shoe-1", doc(item_id="shoe-1", available=True, extra="ignored", features={
        "categories": ["shoes", "red"], "text": "A red shoe", "vector": [0.5, -1, 2e3],
        "unknown": 1}))
    assert isinstance(got, ItemRecord)
    assert (got.item_id, got.available, got.tombstone) == ("shoe-1", True, False)
    assert got.features is not None
    assert got.features.categories == ("shoes", "red")
    assert got.features.text == "A red shoe"
    assert got.features.vector.dtype == np.float32
    np.testing.assert_array_equal(got.features.vector, [0.5, -1, 2000])


def test_only_item_id_is_required_and_absent_available_means_available() -> None:
    assert parse(b"7", doc(item_id=7)) == ItemRecord("7", True, None)
    assert parse(b"x", doc(item_id="x", available=False)) == ItemRecord("x", False, None)
    assert parse(b"x", doc(item_id="x", features=None)) == ItemRecord("x", True, None)
    empty = parse(b"x", doc(item_id="x", features={}))
    assert empty == ItemRecord("x", True, ItemFeatures())


def test_a_tombstone_retires_the_item_named_by_its_key() -> None:
    assert parse(b"shoe-1", None) == ItemRecord("shoe-1", False, None, tombstone=True)
    assert reason(parse(None, None)) == "missing_key"
    assert reason(parse(b" padded", None)) == "bad_item_id"
    assert reason(parse(b"x" * 17, None)) == "bad_item_id"
    assert reason(parse(b"x" * 65, None)) == "oversize"
    assert reason(parse(b"\xff", None)) == "bad_encoding"


@pytest.mark.parametrize(("key", "value", "why"), [
    (b"x", b"", "empty"),
    (b"x", b"{" + b" " * 5000 + b"}", "oversize"),
    (None, doc(item_id="x"), "missing_key"),
    (b"x", b"\xff{}", "bad_encoding"),
    (b"x", b"not json", "not_json"),
    (b"x", b"[1]", "not_object"),
    (b"x", doc(available=True), "missing_item_id"),
    (b"x", doc(item_id=None), "missing_item_id"),
    (b"x", doc(item_id=1.5), "bad_item_id"),
    (b"x", doc(item_id=True), "bad_item_id"),
    (b"x", doc(item_id=""), "bad_item_id"),
    (b"y", doc(item_id="x"), "key_mismatch"),
    (b"x", doc(item_id="x", available="false"), "bad_available"),
    (b"x", doc(item_id="x", available=None), "bad_available"),
    (b"x", doc(item_id="x", available=0), "bad_available"),
    (b"x", doc(item_id="x", features=[]), "bad_features"),
    (b"x", doc(item_id="x", features={"categories": "shoes"}), "bad_features"),
    (b"x", doc(item_id="x", features={"categories": ["ok", 3]}), "bad_features"),
    (b"x", doc(item_id="x", features={"categories": [""]}), "bad_features"),
    (b"x", doc(item_id="x", features={"categories": ["c" * 17]}), "bad_features"),
    (b"x", doc(item_id="x", features={"categories": ["c"] * (MAX_CATEGORIES + 1)}),
     "bad_features"),
    (b"x", doc(item_id="x", features={"text": 3}), "bad_features"),
    (b"x", doc(item_id="x", features={"vector": "0.1 0.2"}), "bad_features"),
    (b"x", doc(item_id="x", features={"vector": []}), "bad_features"),
    (b"x", doc(item_id="x", features={"vector": [1, "2"]}), "bad_features"),
    (b"x", doc(item_id="x", features={"vector": [1, True]}), "bad_features"),
    (b"x", doc(item_id="x", features={"vector": [1e39]}), "bad_features"),
    (b"x", b'{"item_id": "x", "features": {"vector": [NaN]}}', "bad_features"),
    (b"x", b'{"item_id": "x", "features": {"vector": [Infinity]}}', "bad_features"),
    (b"x", b'{"item_id": "x", "features": {"vector": [1' + b"0" * 400 + b"]}}",
     "bad_features"),
])
def test_bad_records_are_refused_with_their_reason(key: bytes | None, value: bytes,
                                                   why: str) -> None:
    got = parse(key, value)
    assert reason(got) == why
    assert got.detail


def test_the_vector_length_is_bounded() -> None:
    limits = Limits(max_record_bytes=1 << 20, max_id_chars=16)
    ok = doc(item_id="x", features={"vector": [0] * MAX_VECTOR_DIMS})
    too_long = doc(item_id="x", features={"vector": [0] * (MAX_VECTOR_DIMS + 1)})
    assert isinstance(parse_item_record(b"x", ok, limits), ItemRecord)
    assert reason(parse_item_record(b"x", too_long, limits)) == "bad_features"


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.just(b"x"), st.binary(max_size=20)),
       value=st.one_of(st.none(), st.binary(max_size=200),
                       st.recursive(st.one_of(st.none(), st.booleans(), st.integers(),
                                              st.floats(), st.text(max_size=5)),
                                    lambda inner: st.one_of(
                                        st.lists(inner, max_size=4),
                                        st.dictionaries(st.sampled_from(
                                            ["item_id", "available", "features",
                                             "categories", "text", "vector"]), inner,
                                            max_size=4)),
                                    max_leaves=12).map(lambda d: json.dumps(d).encode())))
def test_any_bytes_give_a_record_or_a_reason_never_an_exception(
    key: bytes | None, value: bytes | None,
) -> None:
    assert isinstance(parse(key, value), ItemRecord | Invalid)


def test_file_lines_become_the_records_a_worker_accepts() -> None:
    key, value = item_line({"item_id": 42, "features": {"text": "é"}}, LIMITS)
    assert key == b"42"
    assert parse(key, value) == ItemRecord("42", True, ItemFeatures(text="é"))
    assert item_line({"item_id": "x", "retire": True}, LIMITS) == (b"x", None)


@pytest.mark.parametrize(("line", "says"), [
    ([1], "JSON object"),
    ({"available": True}, "no item_id"),
    ({"item_id": ""}, "item_id must be"),
    ({"item_id": "x", "retire": False}, "retire line"),
    ({"item_id": "x", "retire": True, "available": False}, "retire line"),
    ({"item_id": "x", "available": "no"}, "bad_available"),
    ({"item_id": "x", "features": {"vector": ["a"]}}, "bad_features"),
])
def test_bad_file_lines_say_what_is_wrong(line: object, says: str) -> None:
    got = item_line(line, LIMITS)
    assert isinstance(got, str)
    assert says in got
