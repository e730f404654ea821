"""Decode and validate one events-topic record against the event contract.

The contract (docs/CONTRACTS.md, "Event"): key = user id as UTF-8; value = a JSON object with
`user_id` (str|int), `item_id` (str|int), optional `ts` (int epoch ms; default: the
record timestamp) and optional `type` (str); unknown fields are ignored. Anything
else is rejected with a machine-readable reason, and the worker sends the original
bytes to the dead-letter topic. Size limits are checked before parsing, so a huge or
hostile record never costs more than its length check.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

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

# Plausible event times: 2000-01-01 .. 2100-01-01 in epoch ms. Outside that window a
# `ts` is a unit mistake (seconds, micros) or garbage, and would poison latency metrics.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000


@dataclass(frozen=True)
class Limits:
    """Input bounds; enforced before any allocation that grows with the input."""

    max_record_bytes: int = 64 * 1024
    max_id_chars: int = 256


@dataclass(frozen=True)
class Event:
    """A valid event, ids normalised to str."""

    user_id: str
    item_id: str
    ts: int  # epoch ms


@dataclass(frozen=True)
class Invalid:
    """Why a record was rejected; `detail` is a short human explanation."""

    reason: InvalidReason
    detail: str


def _normalise_id(value: object, limits: Limits) -> str | None:
    """str ids as-is, int ids as decimal text; bools, floats and others are not ids."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    if not text or len(text) > limits.max_id_chars or text != text.strip():
        return None
    return text


def validate_event(
    key: bytes | None, value: bytes | None, record_ts: int, limits: Limits
) -> Event | Invalid:
    """Parse one record; return an `Event` or the reason it is not one."""
    if value is None or len(value) == 0:
        return Invalid("empty", "record has no value")
    if len(value) > limits.max_record_bytes:
        return Invalid("oversize", f"{len(value)} bytes > limit {limits.max_record_bytes}")
    if key is None:
        return Invalid("missing_key", "record key must be the user id")
    if len(key) > 4 * limits.max_id_chars:
        return Invalid("oversize", f"key of {len(key)} bytes")
    try:
        text = value.decode("utf-8")
        key_text = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("bad_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError, not just JSONDecodeError: a number of more than 4300 digits
        # raises a plain ValueError (int conversion limit) and must not stop the worker.
        return Invalid("not_json", str(exc)[:200])
    if not isinstance(doc, dict):
        return Invalid("not_object", f"JSON {type(doc).__name__}, expected an object")
    if "user_id" not in doc or doc["user_id"] is None:
        return Invalid("missing_user_id", "no user_id field")
    if "item_id" not in doc or doc["item_id"] is None:
        return Invalid("missing_item_id", "no item_id field")
    user_id = _normalise_id(doc["user_id"], limits)
    if user_id is None:
        return Invalid("bad_user_id", f"user_id must be a non-empty str or int, "
                       f"at most {limits.max_id_chars} chars")
    item_id = _normalise_id(doc["item_id"], limits)
    if item_id is None:
        return Invalid("bad_item_id", f"item_id must be a non-empty str or int, "
                       f"at most {limits.max_id_chars} chars")
    if key_text != user_id:
        # Partitioning (and so per-partition state) relies on key == user id.
        return Invalid("key_mismatch", "record key differs from user_id")
    ts = doc.get("ts", record_ts)
    if isinstance(ts, bool) or not isinstance(ts, int) or not MIN_TS_MS <= ts <= MAX_TS_MS:
        return Invalid("bad_ts", "ts must be an int epoch-milliseconds between 2000 and 2100")
    kind = doc.get("type")
    if kind is not None and not isinstance(kind, str):
        return Invalid("bad_type", "type must be a string when present")
    return Event(user_id=user_id, item_id=item_id, ts=ts)
