"""External item ids <-> embedding rows: the one mapping every stage agrees on.

Events, log files and recommendations speak in external ids (any string; an int
id 42 is the string "42"); the model, the index and the history store speak in
rows of the item table. Row 0 is padding and stands for "unknown item"; known
items are rows 1..V. The vocabulary is saved with the checkpoint (`items.json`)
so a model is always served with the mapping it was trained with.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from streamrec.common.pacing import pause
from streamrec.encoder.errors import DataFormatError

logger = logging.getLogger(__name__)

VOCAB_FORMAT = "streamrec.item_vocab"
VOCAB_VERSION = 1


class ItemVocab:
    """Row `i + 1` is `external_ids[i]`; row 0 is padding / unknown."""

    def __init__(self, external_ids: Sequence[str], base: ItemVocab | None = None) -> None:
        """`base`: a vocabulary `external_ids` may begin with (the serving model's, which
        a warm-started retrain extends and a retrain on the same catalogue repeats). Its
        lookup is then copied in one C call (23 ms at a million items) and only the new
        ids are added, instead of 0.5 s of slices, one of which holds the GIL 31 ms while
        the dict grows past 690,000 entries."""
        ids = list(external_ids)
        kept = len(base) if base is not None and _begins_with(ids, base._ids) else 0
        index: dict[str, int] = base._index.copy() if base is not None and kept else {}
        if len(index) != kept:  # a base being taken apart meanwhile: build it all
            index, kept = {}, 0
        self.reused = kept  # rows whose lookup was copied from `base` (0: built whole)
        # `base`, which these ids begin with (a vocabulary never changes): `extends`
        # answers for it without comparing a million ids again. Weak: a chain of
        # versions must not keep every old vocabulary alive.
        self._begins_as = weakref.ref(base) if kept else None
        self.digest: str | None = None  # sha256 of the checkpoint file it was read from
        # A slice at a time, each a C loop of a few ms: a paced loader thread builds a
        # new version's million-item vocabulary beside the worker's poll loop.
        for start in range(kept, len(ids), LOOKUP_SLICE):
            part = ids[start:start + LOOKUP_SLICE]
            if not all(type(item) is str for item in part):
                position, item = next((start + i, x) for i, x in enumerate(part)
                                      if not isinstance(x, str))
                raise DataFormatError(
                    f"item vocabulary entry {position} is {type(item).__name__} {item!r}; "
                    "external item ids must be strings (an int id 42 is written \"42\")"
                )
            index.update(zip(part, range(start + 1, start + 1 + len(part)), strict=True))
            pause()
        if len(index) != len(ids):
            dupes = [x for x, n in Counter(ids).items() if n > 1][:5]
            raise DataFormatError(
                f"item vocabulary has {len(ids) - len(index)} duplicate ids (e.g. {dupes}); "
                "each external id must map to exactly one row"
            )
        self._ids = ids
        self._index = index
        self._ids_array: np.ndarray | None = None  # lazily built for external()

    @classmethod
    def build(cls, items: Iterable[str | int]) -> ItemVocab:
        """A vocabulary of the distinct ids in `items`.

        When every id is a decimal integer the rows follow numeric order, so on
        1-based integer data (the SASRec files) row == item id; otherwise rows
        follow first appearance. Either way the result is deterministic.
        """
        distinct = list(dict.fromkeys(_as_str(x) for x in items))
        if distinct and all(x.isdecimal() and (x == "0" or x[0] != "0") for x in distinct):
            distinct.sort(key=int)
        return cls(distinct)

    def __len__(self) -> int:
        return len(self._ids)

    def extends(self, other: ItemVocab) -> bool:
        """True when rows 1..len(other) hold `other`'s ids, in order: each of `other`'s
        rows means the same item here (compared a slice at a time, unless `other` is
        this vocabulary or the base it was built on)."""
        if other is self or (self._begins_as is not None and self._begins_as() is other):
            return bool(len(other))
        return _begins_with(self._ids, other._ids)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, (str, int)) and _as_str(item) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemVocab) and self._ids == other._ids

    __hash__ = None  # type: ignore[assignment]  # mutable-looking; compare by content

    def __repr__(self) -> str:
        return f"ItemVocab({len(self)} items)"

    @property
    def ids(self) -> list[str]:
        """External ids in row order (row 1 first); a copy."""
        return list(self._ids)

    def row(self, item: str | int) -> int:
        """The row of `item`, 0 when unknown."""
        return self._index.get(_as_str(item), 0)

    def rows(self, items: Iterable[str | int]) -> np.ndarray:
        """int64 rows of `items`, 0 for unknown ones (one C-level dict lookup per id)."""
        if isinstance(items, np.ndarray) and items.dtype.kind in "iu":
            items = items.astype(str)
        keys = items if _all_str(items) else map(_as_str, items)
        return np.fromiter(map(self._index.get, keys, repeat(0)), dtype=np.int64)

    def external(self, rows: Iterable[int] | np.ndarray) -> list[str]:
        """External ids of `rows` (1..V); row 0 or out-of-range rows raise IndexError."""
        if self._ids_array is None:
            self._ids_array = np.array(["", *self._ids], dtype=object)
        r = np.asarray(rows, dtype=np.int64).ravel()
        if r.size and (r.min() < 1 or r.max() > len(self)):
            raise IndexError(f"rows must be in 1..{len(self)}, got {r.min()}..{r.max()}")
        return self._ids_array[r].tolist()

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict for the checkpoint's `items.json`."""
        return {"format": VOCAB_FORMAT, "version": VOCAB_VERSION, "items": list(self._ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes,
                  base: ItemVocab | None = None) -> ItemVocab:
        """Inverse of `to_json`; also accepts the JSON text itself (`base`: as for the
        constructor). Raises DataFormatError."""
        if isinstance(data, (str, bytes)):
            if isinstance(data, bytes):
                data = data.decode("utf-8")
            try:
                data = _loads_in_slices(data)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"item vocabulary is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping) or data.get("format") != VOCAB_FORMAT:
            raise DataFormatError(
                f"not a streamrec item vocabulary (expected format {VOCAB_FORMAT!r})"
            )
        if data.get("version") != VOCAB_VERSION:
            raise DataFormatError(
                f"item vocabulary version {data.get('version')!r} is not supported "
                f"(this streamrec reads version {VOCAB_VERSION})"
            )
        items = data.get("items")
        if not isinstance(items, list):
            raise DataFormatError("item vocabulary has no 'items' list")
        return cls(items, base)


LOOKUP_SLICE = 10_000  # ids per call of `rows_in_slices` (~2-3 ms of GIL at a time)


def rows_in_slices(lookup: Callable[[Sequence[str]], np.ndarray],
                   items: Sequence[str]) -> np.ndarray:
    """`lookup(items)` (an `ItemVocab.rows`-like bulk lookup) a slice at a time.

    One lookup of a million ids is one C loop holding the GIL 230 ms; a worker's
    loader thread maps a new version's rows beside the poll loop, which gets the
    GIL back between slices."""
    out = np.zeros(len(items), dtype=np.int64)
    for start in range(0, len(items), LOOKUP_SLICE):
        out[start:start + LOOKUP_SLICE] = lookup(items[start:start + LOOKUP_SLICE])
        pause()
    return out


def _begins_with(ids: Sequence[str], prefix: Sequence[str]) -> bool:
    """`ids[:len(prefix)] == prefix`, a slice at a time (a paced thread rests between)."""
    if len(ids) < len(prefix) or not prefix:
        return False
    for start in range(0, len(prefix), LOOKUP_SLICE):
        end = min(start + LOOKUP_SLICE, len(prefix))
        if ids[start:end] != prefix[start:end]:
            return False
        pause()
    return True


SLICE_CHARS = 1 << 18  # JSON text parsed per `json.loads` call of a large vocabulary
_HEAD = f'{{"format": "{VOCAB_FORMAT}", "version": {VOCAB_VERSION}, "items": ['


def _loads_in_slices(text: str) -> Any:
    """`json.loads(text)`, with the items of a large vocabulary written by `to_json`
    parsed a quarter of a megabyte at a time (resting between slices on a paced thread).

    One `json.loads` of a million ids is one C call holding the GIL 60 ms or more,
    and a worker loads a new version on a thread beside its poll loop, which waits
    that long. The items list is cut only between two ids (`", "` after a quote that
    no odd run of backslashes escapes); a cut that lands inside an id (the id `, `
    is written `", "`) leaves a slice that is not JSON, and then, as for any other
    text, one `json.loads` parses the whole."""
    if len(text) <= SLICE_CHARS or not (text.startswith(_HEAD) and text.endswith("]}")):
        return json.loads(text)
    items: list[Any] = []
    start, end = len(_HEAD), len(text) - 2
    try:
        while start < end:
            cut = _boundary(text, min(start + SLICE_CHARS, end), end)
            items.extend(json.loads(f"[{text[start:cut]}]"))
            start = cut + 2  # past the ", " between two ids
            pause()
    except json.JSONDecodeError:  # e.g. cut after the opening quote of the id ", "
        return json.loads(text)
    return {"format": VOCAB_FORMAT, "version": VOCAB_VERSION, "items": items}


def _boundary(text: str, at: int, end: int) -> int:
    """The first position from `at` where one quoted id ends and `, ` follows (or end)."""
    while True:
        quote = text.find('", "', at, end)
        if quote < 0:
            return end
        escapes = 0
        while text[quote - 1 - escapes] == "\\":
            escapes += 1
        if escapes % 2 == 0:  # an unescaped quote: the id before it ends here
            return quote + 1
        at = quote + 1


def _as_str(item: str | int) -> str:
    """Canonical external id: strings as they are, integers in decimal."""
    if isinstance(item, str):
        return item
    if isinstance(item, (bool, float)) or not isinstance(item, (int, np.integer)):
        raise DataFormatError(f"item id {item!r} is a {type(item).__name__}; use str or int")
    return str(int(item))


def _all_str(items: Iterable[Any]) -> bool:
    """True for a list/tuple/array known to hold only strings (cheap check, no copy)."""
    if isinstance(items, np.ndarray):
        return items.dtype.kind == "U"
    if isinstance(items, (list, tuple)):
        return all(type(x) is str for x in items)
    return False
