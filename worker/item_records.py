"""Decode and validate one items-topic record against the item contract.

The contract (docs/CONTRACTS.md, "Item"): a compacted topic keyed by item id; the
value is the item's whole current state, a JSON object with `item_id` (str|int, equal
to the key), optional `available` (true|false; absent = true) and optional `features`
(`categories`: a list of strings, `text`: a string, `vector`: a list of finite
numbers), unknown fields ignored; a tombstone (no value) retires the item and drops
its features. Each record is the whole state because compaction keeps only the
latest record of a key. A record that breaks the contract is refused with a reason
(the event reasons it shares, plus `bad_available` and `bad_features`) and
dead-lettered by the worker; nothing here raises on input. The `features` rules live
in `encoder/features.py`, which training shares (`streamrec train --item-features`).

`item_line` turns a line of a catalogue file (`streamrec items publish`) into the
record to produce, checked by the same rules, so a file never publishes what a
worker would refuse.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from streamrec.encoder.features import (
    MAX_CATEGORIES,
    MAX_VECTOR_DIMS,
    RETIRE_FIELD,
    ItemFeatures,
    parse_features,
)
from streamrec.worker.validate import Invalid, Limits, decode_object, normalise_id

logger = logging.getLogger(__name__)

__all__ = [  # the feature rules are re-exported: callers of the item contract find them here
    "ITEMS_TOPIC_CONFIG", "MAX_CATEGORIES", "MAX_VECTOR_DIMS", "RETIRE_FIELD",
    "TOMBSTONE_RETENTION_MS", "ItemFeatures", "ItemRecord", "item_line", "parse_item_record",
]

# Topic settings the worker and `items publish` create the topic with. Tombstones
# are kept ten years (Kafka's default is one day): a worker started after a
# tombstone was compacted away would not know the item was retired, and would
# recommend it again as long as the serving model knows it.
TOMBSTONE_RETENTION_MS = 10 * 365 * 86_400_000
ITEMS_TOPIC_CONFIG = {"cleanup.policy": "compact",
                      "delete.retention.ms": str(TOMBSTONE_RETENTION_MS)}


@dataclass(frozen=True)
class ItemRecord:
    """A valid items-topic record: the item's state from now on."""

    item_id: str
    available: bool  # False: never recommended (an `available: false` record or a tombstone)
    features: ItemFeatures | None = None  # None: the record gives none (a tombstone drops them)
    tombstone: bool = False


def parse_item_record(key: bytes | None, value: bytes | None, limits: Limits,
                      ) -> ItemRecord | Invalid:
    """Parse one items-topic record; an `ItemRecord` or why it is not one."""
    if value is None:  # a tombstone: the key is all there is
        if key is None:
            return Invalid("missing_key", "a tombstone's key must be the item id")
        if len(key) > 4 * limits.max_id_chars:
            return Invalid("oversize", f"key of {len(key)} bytes")
        try:
            item_id = normalise_id(key.decode("utf-8"), limits)
        except UnicodeDecodeError as exc:
            return Invalid("bad_encoding", f"key not UTF-8: {exc.reason} at byte {exc.start}")
        if item_id is None:
            return Invalid("bad_item_id", _bad_id(limits))
        return ItemRecord(item_id, available=False, tombstone=True)
    decoded = decode_object(key, value, limits, "item id")
    if isinstance(decoded, Invalid):
        return decoded
    key_text, doc = decoded
    return _item_of(doc, key_text, limits)


def _item_of(doc: dict[str, Any], key_text: str, limits: Limits) -> ItemRecord | Invalid:
    if doc.get("item_id") is None:
        return Invalid("missing_item_id", "no item_id field")
    item_id = normalise_id(doc["item_id"], limits)
    if item_id is None:
        return Invalid("bad_item_id", _bad_id(limits))
    if key_text != item_id:
        return Invalid("key_mismatch", "record key differs from item_id")
    available = doc.get("available", True)
    if type(available) is not bool:
        return Invalid("bad_available", f"available must be true or false, got "
                       f"{json.dumps(available)[:40]} (leave it out for true; a record "
                       "without a value retires the item)")
    features = doc.get("features")
    if features is None:
        return ItemRecord(item_id, available)
    parsed = parse_features(features, limits.max_id_chars)
    if isinstance(parsed, str):
        return Invalid("bad_features", parsed)
    return ItemRecord(item_id, available, parsed)


def _bad_id(limits: Limits) -> str:
    return (f"item_id must be a non-empty str or int without surrounding blanks, at most "
            f"{limits.max_id_chars} chars")


def item_line(doc: object, limits: Limits) -> tuple[bytes, bytes | None] | str:
    """(key, value) to produce for one catalogue-file line, None the value of a
    tombstone; or what is wrong with the line.

    A line is an item record as the topic carries it, or `{"item_id": "x", "retire":
    true}` (nothing else) for a tombstone: retire the item and forget its features.
    """
    if not isinstance(doc, dict):
        return f"a line must be a JSON object, got {type(doc).__name__}"
    item_id = normalise_id(doc.get("item_id"), limits)
    if item_id is None:
        return _bad_id(limits) if "item_id" in doc else "no item_id field"
    key = item_id.encode()
    if RETIRE_FIELD in doc:
        if doc[RETIRE_FIELD] is not True or set(doc) != {"item_id", RETIRE_FIELD}:
            return (f'a retire line is {{"item_id": ..., "{RETIRE_FIELD}": true}} and '
                    "nothing else (it publishes a tombstone)")
        return key, None
    value = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    checked = parse_item_record(key, value, limits)
    if isinstance(checked, Invalid):
        return f"{checked.reason}: {checked.detail}"
    return key, value
