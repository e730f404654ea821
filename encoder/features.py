"""What an item is about: the `features` of an item record, checked, and read from a file.

The item contract (docs/CONTRACTS.md, "Item") lets a record carry `features`:
`categories` (a list of strings), `text` (a string) and `vector` (a list of finite
numbers computed by the user's own model). The worker reads them off the items topic
(`worker/item_records.py`) and training reads them from a JSON-lines file of the same
records (`streamrec train --item-features FILE`): both check them here, with one set of
rules, so a record the worker would refuse never trains a model either. What the
content tower makes of them is `content.py`'s business.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.encoder.errors import DataFormatError

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 256  # per item
MAX_VECTOR_DIMS = 4096  # of a dense feature vector
DEFAULT_MAX_ID_CHARS = 256  # the worker's default --max-id-chars
RETIRE_FIELD = "retire"  # a catalogue file line `{"item_id": "x", "retire": true}`: a tombstone
SHOWN_BAD_LINES = 5  # bad lines logged one by one; the rest are only counted


@dataclass(frozen=True)
class ItemFeatures:
    """What an item is about, for the content tower (issue 23, part 2)."""

    categories: tuple[str, ...] = ()
    text: str | None = None
    vector: np.ndarray | None = None  # [D] float32


def parse_features(doc: object, max_chars: int) -> ItemFeatures | str:
    """The `features` object of an item record, or what is wrong with it.

    Never raises on input: the worker dead-letters the reason, training counts it.
    `max_chars` bounds a category's length (the worker's `--max-id-chars`).
    """
    if not isinstance(doc, dict):
        return f"features must be an object, got {type(doc).__name__}"
    categories = doc.get("categories")
    if categories is None:
        categories = []
    if not isinstance(categories, list) or len(categories) > MAX_CATEGORIES or not all(
            type(c) is str and c and len(c) <= max_chars for c in categories):
        return (f"features.categories must be a list of at most {MAX_CATEGORIES} non-empty "
                f"strings of at most {max_chars} chars")
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


def item_id_of(value: object, max_chars: int) -> str | None:
    """An item id as the vocabulary spells it (ints in decimal), or None for a bad one:
    bools, floats, empty strings, surrounding blanks, longer than `max_chars`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    if not text or len(text) > max_chars or text != text.strip():
        return None
    return text


def read_item_features(path: str | Path, max_chars: int = DEFAULT_MAX_ID_CHARS,
                       ) -> dict[str, ItemFeatures]:
    """item id -> features, from a JSON-lines file of item records (the items topic's).

    The file is read as the topic would be replayed: a later line of an item replaces
    the earlier one (a record without `features` leaves the item without any), and
    `{"item_id": x, "retire": true}` forgets the item. `available` is checked but not
    used: a retired item's features still say what it was like. Bad lines are logged
    with their numbers and skipped; a file without a single good line is refused.
    """
    file = Path(path)
    features: dict[str, ItemFeatures | None] = {}
    bad: list[tuple[int, str]] = []
    lines = 0
    try:
        with file.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                lines += 1
                parsed = _record_line(line, max_chars)
                if isinstance(parsed, str):
                    bad.append((number, parsed))
                    continue
                item_id, item_features, retire = parsed
                if retire:
                    features.pop(item_id, None)
                else:
                    features[item_id] = item_features
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read item features from {file}: {exc}") from exc
    for number, why in bad[:SHOWN_BAD_LINES]:
        logger.warning("%s:%d: skipped: %s", file, number, why)
    if lines and len(bad) == lines:
        raise DataFormatError(f"{file}: none of its {lines} lines is a valid item record "
                              f"(line {bad[0][0]}: {bad[0][1]}); each line is a JSON object "
                              'like {"item_id": "x", "features": {"categories": ["a"], '
                              '"text": "...", "vector": [0.1, 0.2]}}')
    if not lines:
        raise DataFormatError(f"{file} holds no item records")
    kept = {k: v for k, v in features.items() if v is not None}
    logger.info("item features from %s: %d lines, %d bad, %d items with features, "
                "%d without", file, lines, len(bad), len(kept), len(features) - len(kept))
    return kept


def _record_line(line: str, max_chars: int) -> tuple[str, ItemFeatures | None, bool] | str:
    """(item id, features or None, whether it retires the item) of one line, or what is
    wrong with it: the rules of `worker/item_records.item_line`."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg}"
    if not isinstance(doc, dict):
        return f"a line must be a JSON object, got {type(doc).__name__}"
    if "item_id" not in doc or doc["item_id"] is None:
        return "no item_id field"
    item_id = item_id_of(doc["item_id"], max_chars)
    if item_id is None:
        return (f"item_id must be a non-empty str or int without surrounding blanks, at "
                f"most {max_chars} chars")
    if RETIRE_FIELD in doc:
        if doc[RETIRE_FIELD] is not True or set(doc) != {"item_id", RETIRE_FIELD}:
            return f'a retire line is {{"item_id": ..., "{RETIRE_FIELD}": true}} and nothing else'
        return item_id, None, True
    available = doc.get("available", True)
    if type(available) is not bool:
        return "available must be true or false"
    if doc.get("features") is None:
        return item_id, None, False
    parsed = parse_features(doc["features"], max_chars)
    if isinstance(parsed, str):
        return parsed
    return item_id, parsed, False
