"""The event contract: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.common.errors import ConfigError
from streamrec.worker.validate import (
    INVALID_REASONS,
    MIN_TS_MS,
    Event,
    EventFilter,
    Invalid,
    Limits,
    Skipped,
    SkippedTypeLabels,
    validate_event,
)

LIMITS = Limits(max_record_bytes=1024, max_id_chars=16)
TS = 1_700_000_000_000
NOW = 1_795_000_000_000  # 2026-11-18: the wall clock of the time tests, fixed
DAY = 86_400_000


def check(key: bytes | None, value: bytes | None) -> Event | Invalid:
    return validate_event(key, value, TS, LIMITS)


def doc(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_valid_event_normalises_int_ids_and_defaults_ts_to_record_time() -> None:
    event = check(b"42", doc(user_id=42, item_id=7, extra={"ignored": True}))
    assert event == Event(user_id="42", item_id="7", ts=TS)


def test_explicit_ts_and_type_are_kept() -> None:
    event = check(b"u", doc(user_id="u", item_id="i", ts=TS + 5, type="click"))
    assert event == Event("u", "i", TS + 5, "click")
    assert check(b"u", doc(user_id="u", item_id="i", type=None)) == Event("u", "i", TS, None)


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
        (b"u", doc(user_id="u", item_id="i", ts=None), "bad_ts"),
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


# -- event times --------------------------------------------------------------------

def at(ts: object, record_ts: int = TS) -> Event | Invalid | Skipped:
    """The result for an event with this `ts`, the wall clock being NOW."""
    return validate_event(b"u", doc(user_id="u", item_id="i", ts=ts), record_ts, LIMITS,
                          now=NOW)


@pytest.mark.parametrize("ts", [
    881_250_949_000,  # 1997-12-04: the first rating of MovieLens 100k
    946_684_799_999,  # 1999-12-31T23:59:59.999, refused by the old 2000..2100 window
    MIN_TS_MS,  # 1973-03-03T09:46:40Z, the oldest valid time
    NOW, NOW + DAY,  # up to one day ahead of the wall clock (clock skew)
], ids=["movielens-1997", "1999", "oldest", "now", "one-day-ahead"])
def test_any_plausible_millisecond_time_is_valid_old_ones_included(ts: int) -> None:
    assert at(ts) == Event("u", "i", ts)


@pytest.mark.parametrize(("ts", "detail"), [
    (881_250_949, "looks like seconds: multiply by 1000"),  # MovieLens u.data as given
    (1_700_000_000, "looks like seconds: multiply by 1000"),
    (MIN_TS_MS - 1, "looks like seconds: multiply by 1000"),
    (0, "looks like seconds"),
    (881_250_949_000_000, "looks like microseconds: divide by 1000"),
    (NOW * 1000, "looks like microseconds: divide by 1000"),
    (1_700_000_000_000_000_000, "looks like nanoseconds: divide by 1000000"),
    (NOW + DAY + 1, "is in the future (2026-11-19"),
    (4_102_444_800_001, "is in the future (2100-01-01"),  # allowed by the old window
    (10**30, "is in the future (beyond year 9999)"),
    (10**300, "... (301 digits) is in the future"),
    (-1, "is negative"),
    (1.7e12, "must be an integer of epoch milliseconds, got float"),
    (True, "got bool"),
    ("1700000000000", "got str"),
], ids=lambda v: str(v)[:16])
def test_unit_mistakes_and_impossible_times_are_bad_ts_with_the_fix(ts: object,
                                                                    detail: str) -> None:
    result = at(ts)
    assert isinstance(result, Invalid)
    assert result.reason == "bad_ts"
    assert detail in result.detail
    assert len(result.detail) < 300


def test_the_record_timestamp_stands_in_for_a_missing_ts_under_the_same_rule() -> None:
    value = doc(user_id="u", item_id="i")
    assert validate_event(b"u", value, 881_250_949_000, LIMITS, now=NOW).ts == 881_250_949_000
    result = validate_event(b"u", value, 881_250_949, LIMITS, now=NOW)
    assert isinstance(result, Invalid)
    assert result.reason == "bad_ts"
    assert result.detail.startswith("record timestamp 881250949 looks like seconds")
    assert "the event has no ts" in result.detail


def test_the_future_bound_is_a_limit() -> None:
    lenient = Limits(max_future_ms=7 * DAY)
    value = doc(user_id="u", item_id="i", ts=NOW + 3 * DAY)
    assert isinstance(validate_event(b"u", value, TS, lenient, now=NOW), Event)
    assert isinstance(validate_event(b"u", value, TS, LIMITS, now=NOW), Invalid)


def test_the_wall_clock_is_the_default_now() -> None:
    import time

    now = int(time.time() * 1000)
    assert isinstance(validate_event(b"u", doc(user_id="u", item_id="i", ts=now + DAY // 2),
                                     TS, LIMITS), Event)
    late = validate_event(b"u", doc(user_id="u", item_id="i", ts=now + 2 * DAY), TS, LIMITS)
    assert isinstance(late, Invalid)
    assert "in the future" in late.detail


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**40), max_value=10**40))
def test_every_int_ts_is_valid_exactly_inside_the_window(ts: int) -> None:
    result = at(ts)
    if MIN_TS_MS <= ts <= NOW + DAY:
        assert result == Event("u", "i", ts)
    else:
        assert isinstance(result, Invalid)
        assert result.reason == "bad_ts"
        if 0 <= ts < MIN_TS_MS:
            assert "seconds" in result.detail


# -- event types ----------------------------------------------------------------------

def typed(kind: object = None) -> bytes:
    fields: dict[str, object] = {"user_id": "u", "item_id": "i"}
    if kind is not None:
        fields["type"] = kind
    return doc(**fields)


def test_an_allow_list_skips_valid_events_of_other_types() -> None:
    only = EventFilter(frozenset({"purchase", "view"}))
    assert validate_event(b"u", typed("view"), TS, LIMITS, event_filter=only) == Event(
        "u", "i", TS, "view")
    assert validate_event(b"u", typed("click"), TS, LIMITS, event_filter=only) == Skipped(
        "click")
    assert validate_event(b"u", typed("View"), TS, LIMITS, event_filter=only) == Skipped(
        "View")  # exact, case-sensitive names
    assert validate_event(b"u", typed(), TS, LIMITS, event_filter=only) == Skipped(None)


def test_untyped_events_need_the_untyped_marker_once_there_is_an_allow_list() -> None:
    assert isinstance(validate_event(b"u", typed(), TS, LIMITS), Event)  # no filter
    assert isinstance(validate_event(b"u", typed(), TS, LIMITS, event_filter=EventFilter()),
                      Event)  # the filter of every type
    marker = EventFilter(frozenset({"purchase", "untyped"}))
    assert validate_event(b"u", typed(), TS, LIMITS, event_filter=marker) == Event(
        "u", "i", TS, None)
    assert validate_event(b"u", typed("view"), TS, LIMITS, event_filter=marker) == Skipped(
        "view")


def test_a_broken_record_is_invalid_whatever_its_type() -> None:
    only = EventFilter(frozenset({"purchase"}))
    broken = doc(user_id="u", item_id="i", ts=1_700_000_000, type="view")
    result = validate_event(b"u", broken, TS, LIMITS, event_filter=only)
    assert isinstance(result, Invalid)
    assert result.reason == "bad_ts"
    result = validate_event(b"u", typed(7), TS, LIMITS, event_filter=only)
    assert isinstance(result, Invalid)
    assert result.reason == "bad_type"


def test_an_empty_allow_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        EventFilter(frozenset())
    with pytest.raises(ConfigError, match="at least one"):
        EventFilter(frozenset({""}))
    assert EventFilter(frozenset({"view"})).accepts(Event("u", "i", TS, "view"))
    assert not EventFilter(frozenset({"view"})).accepts(Event("u", "i", TS))


def test_skipped_type_labels_are_bounded() -> None:
    labels = SkippedTypeLabels(cap=3)
    assert [labels(t) for t in ["a", "b", None, "a", "c", "d", "x" * 65, "b"]] == [
        "a", "b", "untyped", "a", "c", "other", "other", "b"]
    many = SkippedTypeLabels()
    assert len({many(f"type-{n}") for n in range(10_000)}) == 16 + 1


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
        assert isinstance(result, Event)
        assert key is not None
        assert result.user_id == key.decode()
        assert 0 < len(result.item_id) <= LIMITS.max_id_chars
        assert result.type is None or isinstance(result.type, str)
        # The filter only ever turns a valid event into Skipped, never anything else.
        filtered = validate_event(key, value, TS, LIMITS,
                                  event_filter=EventFilter(frozenset({"u"})))
        assert filtered == (result if result.type == "u" else Skipped(result.type))


def test_ids_and_times_past_64_bits_read_as_the_standard_json_reads_them() -> None:
    # orjson (the fast path) reads such integers as floats; json.loads as ints.
    big = 2**70
    result = validate_event(str(big).encode(), b'{"user_id": %d, "item_id": %d}' % (big, big),
                            TS, Limits())
    assert result == Event(str(big), str(big), TS)
    result = validate_event(b"u", b'{"user_id": "u", "item_id": "i", "ts": %d}' % big, TS,
                            Limits())
    assert isinstance(result, Invalid)
    assert "is in the future" in result.detail
