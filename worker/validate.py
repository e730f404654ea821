"""Decode and validate one events-topic record against the event contract.

The contract (docs/CONTRACTS.md, "Event"): key = user id as UTF-8; value = a JSON object with
`user_id` (str|int), `item_id` (str|int), optional `ts` (int epoch ms; default: the
record timestamp) and optional `type` (str); unknown fields are ignored. Anything
else is rejected with a machine-readable reason, and the worker sends the original
bytes to the dead-letter topic. Size limits are checked before parsing, so a huge or
hostile record never costs more than its length check.

Event times: any epoch-millisecond time from 1973-03-03 (`MIN_TS_MS` = 1e11) to one
day ahead of now is valid, so replays of old logs keep their own times. The lines
are where units can no longer be confused: below 1e11 a value is a plausible time
in *seconds* (1973..5138) and, in ms, only the first three years of the epoch;
above now + 1 day it is a future time, or a plausible time in micro- or
nanoseconds, and the detail says which and how to fix it.

Event types: a valid event whose type is outside the allow-list (`EventFilter`) is
not invalid: `validate_event` returns `Skipped`, which the worker counts and drops
without a dead letter.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson

from streamrec.common.errors import ConfigError
from streamrec.encoder.features import item_id_of
from streamrec.encoder.formats import OTHER_TYPES, UNTYPED, type_allowed

logger = logging.getLogger(__name__)

InvalidReason = Literal[
    "oversize",
    "empty",
    "missing_key",
    "bad_encoding",
    "not_json",
    "not_object",
    "missing_user_id",
    "missing_item_id",
    "bad_user_id",
    "bad_item_id",
    "bad_ts",
    "bad_type",
    "key_mismatch",
]
INVALID_REASONS: tuple[str, ...] = InvalidReason.__args__  # type: ignore[attr-defined]
# Reasons only an items-topic record can have (`item_records.py`); the others are shared.
ItemOnlyReason = Literal["bad_available", "bad_features"]

# Smallest valid `ts`: 1e11 ms = 1973-03-03T09:46:40Z. Below it a value is far more
# likely seconds (881250949 s = 1997) than a millisecond time from 1970-1973.
MIN_TS_MS = 100_000_000_000
DAY_MS = 86_400_000
SKIPPED_TYPE_LABELS = 16  # distinct type labels of the skipped-events metric, then "other"


@dataclass(frozen=True)
class Limits:
    """Input bounds; enforced before any allocation that grows with the input."""

    max_record_bytes: int = 64 * 1024
    max_id_chars: int = 256
    max_future_ms: int = DAY_MS  # a ts further ahead of the wall clock is bad_ts


class Event(NamedTuple):
    """A valid event, ids normalised to str (a named tuple: built once per event, it
    costs a third of a frozen dataclass)."""

    user_id: str
    item_id: str
    ts: int  # epoch ms
    type: str | None = None  # the event's `type`, None when it has none


@dataclass(frozen=True)
class Invalid:
    """Why a record was rejected; `detail` is a short human explanation."""

    reason: InvalidReason | ItemOnlyReason
    detail: str


@dataclass(frozen=True)
class Skipped:
    """A valid event of a type outside the allow-list: counted, never dead-lettered."""

    type: str | None  # None: the event has no type


@dataclass(frozen=True)
class EventFilter:
    """Which event types the worker (and training) uses: `--event-types`.

    `types` None keeps every event. With an allow-list an event without a type is
    kept only when the list holds "untyped" (`streamrec.encoder.formats.UNTYPED`).
    """

    types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.types is not None and (not self.types or "" in self.types):
            raise ConfigError("--event-types needs at least one non-empty type name "
                              "(leave it unset to use every type)")

    def accepts(self, event: Event) -> bool:
        """Whether `event` counts (its history changes, it gets a recommendation)."""
        return type_allowed(event.type, self.types)


class SkippedTypeLabels:
    """Bounded label values for counting skipped events by type in a metric.

    The first `cap` distinct types are their own label, events without a type are
    "untyped", any later type is "other": a stream of made-up types cannot grow the
    metric without bound. Not thread-safe; one per worker loop.
    """

    def __init__(self, cap: int = SKIPPED_TYPE_LABELS) -> None:
        self.cap = cap
        self._seen: set[str] = set()

    def __call__(self, event_type: str | None) -> str:
        if event_type is None:
            return UNTYPED
        if event_type in self._seen:
            return event_type
        if len(self._seen) < self.cap and len(event_type) <= 64:
            self._seen.add(event_type)
            return event_type
        return OTHER_TYPES


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def check_ts(ts: object, now: int, limits: Limits, name: str = "ts") -> str | None:
    """None if `ts` is a valid event time at wall-clock `now` (epoch ms), else why not."""
    if isinstance(ts, bool) or not isinstance(ts, int):
        return f"{name} must be an integer of epoch milliseconds, got {type(ts).__name__}"
    shown = str(ts) if abs(ts) < 10**24 else f"{str(ts)[:20]}... ({len(str(abs(ts)))} digits)"
    if ts < 0:
        return f"{name} {shown} is negative: epoch milliseconds count from 1970-01-01"
    if ts < MIN_TS_MS:
        return (f"{name} {shown} looks like seconds: multiply by 1000 (epoch milliseconds "
                f"are >= {MIN_TS_MS}, 1973-03-03)")
    latest = now + limits.max_future_ms
    if ts <= latest:
        return None
    if MIN_TS_MS * 1000 <= ts <= latest * 1000:
        return f"{name} {shown} looks like microseconds: divide by 1000"
    if MIN_TS_MS * 1_000_000 <= ts <= latest * 1_000_000:
        return f"{name} {shown} looks like nanoseconds: divide by 1000000"
    return (f"{name} {shown} is in the future ({_iso(ts)}): more than "
            f"{limits.max_future_ms / 3_600_000:g} h after now ({_iso(now)})")


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return "beyond year 9999"


def normalise_id(value: object, limits: Limits) -> str | None:
    """str ids as-is, int ids as decimal text; bools, floats and others are not ids
    (the rule training reads item files by: `encoder.features.item_id_of`)."""
    return item_id_of(value, limits.max_id_chars)


def decode_object(key: bytes | None, value: bytes | None, limits: Limits, key_is: str,
                  ) -> tuple[str, dict[str, Any]] | Invalid:
    """(key text, JSON object) of a record, or why it is not one: the checks every
    record kind shares (events here, items in `item_records.py`), size limits first so
    a huge or hostile record costs no more than its length check. `key_is` names what
    the key must be, for the detail of a missing one."""
    if value is None or len(value) == 0:
        return Invalid("empty", "record has no value")
    if len(value) > limits.max_record_bytes:
        return Invalid("oversize", f"{len(value)} bytes > limit {limits.max_record_bytes}")
    if key is None:
        return Invalid("missing_key", f"record key must be the {key_is}")
    if len(key) > 4 * limits.max_id_chars:
        return Invalid("oversize", f"key of {len(key)} bytes")
    try:
        key_text = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("bad_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        # orjson parses the bytes ~4x faster than json.loads parses their text. What it
        # refuses (bad UTF-8, NaN, lone surrogates, deep nesting) goes the standard
        # library's way, and so does an id or ts it read as a float (it reads integers
        # past 64 bits so): a record is judged as json.loads judges it.
        doc = orjson.loads(value)
        if type(doc) is dict and (type(doc.get("ts")) is float or type(doc.get("user_id"))
                                  is float or type(doc.get("item_id")) is float):
            raise orjson.JSONDecodeError("a float where json.loads may read an int", "", 0)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return Invalid("bad_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
        except (ValueError, RecursionError) as exc:
            # ValueError, not just JSONDecodeError: a number of more than 4300 digits
            # raises a plain ValueError (int conversion limit) and must not stop the worker.
            return Invalid("not_json", str(exc)[:200])
    if not isinstance(doc, dict):
        return Invalid("not_object", f"JSON {type(doc).__name__}, expected an object")
    return key_text, doc


def validate_event(
    key: bytes | None, value: bytes | None, record_ts: int, limits: Limits, *,
    event_filter: EventFilter | None = None, now: int | None = None,
) -> Event | Invalid | Skipped:
    """Parse one record; return an `Event`, the reason it is not one, or `Skipped`.

    `Skipped` comes only with an `event_filter`, for a valid event whose type it
    does not accept (an invalid record is `Invalid` whatever its type). `now` is the
    wall clock in epoch ms (default: read per call) that bounds future times.
    """
    decoded = decode_object(key, value, limits, "user id")
    if isinstance(decoded, Invalid):
        return decoded
    key_text, doc = decoded
    if "user_id" not in doc or doc["user_id"] is None:
        return Invalid("missing_user_id", "no user_id field")
    if "item_id" not in doc or doc["item_id"] is None:
        return Invalid("missing_item_id", "no item_id field")
    user_id = normalise_id(doc["user_id"], limits)
    if user_id is None:
        return Invalid("bad_user_id", f"user_id must be a non-empty str or int, "
                       f"at most {limits.max_id_chars} chars")
    item_id = normalise_id(doc["item_id"], limits)
    if item_id is None:
        return Invalid("bad_item_id", f"item_id must be a non-empty str or int, "
                       f"at most {limits.max_id_chars} chars")
    if key_text != user_id:
        # Partitioning (and so per-partition state) relies on key == user id.
        return Invalid("key_mismatch", "record key differs from user_id")
    given = "ts" in doc
    ts = doc["ts"] if given else record_ts
    if now is None:
        now = now_ms()
    # The common case in one comparison; check_ts explains everything else.
    if type(ts) is not int or not MIN_TS_MS <= ts <= now + limits.max_future_ms:
        why = check_ts(ts, now, limits, "ts" if given else "record timestamp")
        if why is not None:
            if not given:
                why += " (the event has no ts, so its record timestamp is used)"
            return Invalid("bad_ts", why)
    kind = doc.get("type")
    if kind is not None and type(kind) is not str:
        return Invalid("bad_type", "type must be a string when present")
    if event_filter is not None and event_filter.types is not None and not type_allowed(
            kind, event_filter.types):
        return Skipped(kind)
    return Event(user_id, item_id, ts, kind)
