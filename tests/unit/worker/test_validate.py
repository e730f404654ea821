"""The event contract: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.worker.validate import INVALID_REASONS, Event, Invalid, Limits, validate_event

LIMITS = Limits(max_record_bytes=1024, max_id_chars=16)
TS = 1_700_000_000_000


def check(key: bytes | None, value: bytes | None) -> Event | Invalid:
    return validate_event(key, value, TS, LIMITS)


def doc(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_valid_event_normalises_int_ids_and_defaults_ts_to_record_time() -> None:
    event = check(b"42", doc(user_id=42, item_id=7, extra={"ignored": True}))
    assert event == Event(user_id="42", item_id="7", ts=TS)


def test_explicit_ts_and_type_are_kept() -> None:
    event = check(b"u", doc(user_id="u", item_id="i", ts=TS + 5, type="click"))
    assert event == Event("u", "i", TS + 5)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"u", None, "empty"),
        (b"u", b"", "empty"),
        (b"u", b"x" * 1025, "oversize"),
        (None, doc(user_id="u", item_id="i"), "missing_key"),
        (b"u", b"\xff\xfe{}", "bad_encoding"),
        (b"u", b"{not json", "not_json"),
        (b"u", b"[1, 2]", "not_object"),
        (b"u", b"\"text\"", "not_object"),
        (b"u", doc(item_id="i"), "missing_user_id"),
        (b"u", doc(user_id=None, item_id="i"), "missing_user_id"),
        (b"u", doc(user_id="u"), "missing_item_id"),
        (b"u", doc(user_id=1.5, item_id="i"), "bad_user_id"),
        (b"u", doc(user_id=True, item_id="i"), "bad_user_id"),
        (b"u", doc(user_id="", item_id="i"), "bad_user_id"),
        (b"u", doc(user_id="x" * 17, item_id="i"), "bad_user_id"),
        (b"u", doc(user_id="u", item_id=["i"]), "bad_item_id"),
        (b"u", doc(user_id="u", item_id={"a": 1}), "bad_item_id"),
        (b"v", doc(user_id="u", item_id="i"), "key_mismatch"),
        (b"u", doc(user_id="u", item_id="i", ts="2024-01-01"), "bad_ts"),
        (b"u", doc(user_id="u", item_id="i", ts=-1), "bad_ts"),
        (b"u", doc(user_id="u", item_id="i", ts=1_700_000_000), "bad_ts"),  # seconds
        (b"u", doc(user_id="u", item_id="i", ts=10**30), "bad_ts"),
        (b"u", doc(user_id="u", item_id="i", type=3), "bad_type"),
    ],
)
def test_bad_records_get_their_reason(key: bytes | None, value: bytes | None, reason: str) -> None:
    result = check(key, value)
    assert isinstance(result, Invalid)
    assert result.reason == reason
    assert result.reason in INVALID_REASONS


def test_nan_and_deep_nesting_are_rejected_not_raised() -> None:
    assert isinstance(check(b"u", b'{"user_id": "u", "item_id": "i", "ts": NaN}'), Invalid)
    deep = b'{"user_id": "u", "item_id": "i", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    result = validate_event(b"u", deep, TS, Limits(max_record_bytes=1 << 20))
    assert isinstance(result, Invalid)
    assert result.reason == "not_json"


def test_numbers_past_the_int_digit_limit_are_rejected_not_raised() -> None:
    # Python refuses to parse ints of more than 4300 digits with a plain ValueError
    # (not a JSONDecodeError); it once escaped and stopped the worker on every restart.
    huge = b"9" * 5000
    for value in (b'{"user_id": "u", "item_id": "i", "ts": ' + huge + b"}",
                  b'{"user_id": ' + huge + b', "item_id": "i"}', huge):
        result = validate_event(b"u", value, TS, Limits(max_record_bytes=1 << 16))
        assert isinstance(result, Invalid)
        assert result.reason == "not_json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)
ids = st.one_of(st.just("u"), st.text(max_size=20), st.integers(), st.floats(), st.booleans(),
                st.none(), json_values)


@settings(max_examples=400, deadline=None)
@given(key=st.one_of(st.none(), st.just(b"u"), st.binary(max_size=20)),
       value=st.one_of(
           st.binary(max_size=100),
           st.fixed_dictionaries({"user_id": ids, "item_id": ids},
                                 optional={"ts": json_values | st.integers(), "type": ids})
           .map(lambda d: json.dumps(d).encode()),
           json_values.map(lambda d: json.dumps(d).encode()),
       ))
def test_any_record_gives_an_event_or_a_reason_never_an_exception(
    key: bytes | None, value: bytes,
) -> None:
    result = validate_event(key, value, TS, LIMITS)
    if isinstance(result, Invalid):
        assert result.reason in INVALID_REASONS
    else:
        assert key is not None
        assert result.user_id == key.decode()
        assert 0 < len(result.item_id) <= LIMITS.max_id_chars
