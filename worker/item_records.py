"""Decode and validate one items-topic record against the item contract.

The contract (docs/CONTRACTS.md, "Item"): a compacted topic keyed by item id; the
value is the item's whole current state, a JSON object with `item_id` (str|int, equal
to the key), optional `available` (true|false; absent = true) and optional `features`
(`categories`: a list of strings, `text`: a string, `vector`: a list of finite
numbers), unknown fields ignored; a tombstone (no value) retires the item and drops
its features. Each record is the whole state because compaction keeps only the
latest record of a key. A record that breaks the contract is refused with a reason
(the event reasons it shares, plus `bad_available` and `bad_features`) and
dead-lettered by the worker; nothing here raises on input.

`item_line` turns a line of a catalogue file (`streamrec items publish`) into the
record to produce, checked by the same rules, so a file never publishes what a
worker would refuse.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec.worker.validate import Invalid, Limits, decode_object, normalise_id

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 256  # per item
MAX_VECTOR_DIMS = 4096  # of a dense feature vector
# Topic settings the worker and `items publish` create the topic with. Tombstones
# are kept ten years (Kafka's default is one day): a worker started after a
# tombstone was compacted away would not know the item was retired, and would
# recommend it again as long as the serving model knows it.
TOMBSTONE_RETENTION_MS = 10 * 365 * 86_400_000
ITEMS_TOPIC_CONFIG = {"cleanup.policy": "compact",
                      "delete.retention.ms": str(TOMBSTONE_RETENTION_MS)}
RETIRE_FIELD = "retire"  # a catalogue file line `{"item_id": "x", "retire": true}`: a tombstone


@dataclass(frozen=True)
class ItemFeatures:
    """What an item is about, for the content tower (issue 23, part 2)."""

    categories: tuple[str, ...] = ()
    text: str | None = None
    vector: np.ndarray | None = None  # [D] float32


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
    parsed = _features(features, limits)
    if isinstance(parsed, str):
        return Invalid("bad_features", parsed)
    return ItemRecord(item_id, available, parsed)


def _bad_id(limits: Limits) -> str:
    return (f"item_id must be a non-empty str or int without surrounding blanks, at most "
            f"{limits.max_id_chars} chars")


def _features(doc: object, limits: Limits) -> ItemFeatures | str:
    """The features of a record, or what is wrong with them."""
    if not isinstance(doc, dict):
        return f"features must be an object, got {type(doc).__name__}"
    categories = doc.get("categories")
    if categories is None:
        categories = []
    if not isinstance(categories, list) or len(categories) > MAX_CATEGORIES or not all(
            type(c) is str and c and len(c) <= limits.max_id_chars for c in categories):
        return (f"features.categories must be a list of at most {MAX_CATEGORIES} non-empty "
                f"strings of at most {limits.max_id_chars} chars")
    text = doc.get("text")
    if text is not None and type(text) is not str:
        return f"features.text must be a string, got {type(text).__name__}"
    vector = doc.get("vector")
    if vector is not None:
        wrong = (f"features.vector must be a list of 1 to {MAX_VECTOR_DIMS} finite numbers "
                 "within float32's range")
        if (not isinstance(vector, list) or not 0 < len(vector) <= MAX_VECTOR_DIMS
                or not all(type(x) in (int, float) for x in vector)):
            return wrong
        with np.errstate(over="ignore"):
            try:  # NaN and Infinity are JSON to Python; 1e39 and 10**400 overflow float32
                vector = np.asarray(vector, dtype=np.float32)
            except OverflowError:
                return wrong
        if not np.isfinite(vector).all():
            return wrong
    return ItemFeatures(tuple(categories), text, vector)


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
