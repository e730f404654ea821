"""Interaction logs in, per-user item-row sequences out.

`Interactions` is what training, evaluation and the baselines consume: one int64
array of vocabulary rows per user, oldest first. It is built either from a file
(`load_interactions`, formats parsed in `formats.py`) or from parallel columns
(`Interactions.from_pairs`, which the events-topic replay uses). All sequences
are views into one flat array sorted by (user, time), so a 287k-line log costs a
few MB and a few hundred milliseconds. How much of the input was usable is kept
in a `LoadReport`, because silently dropped lines are how evaluations go wrong.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.formats import DATA_FORMATS, BadLine, DataFormat, SkipTally, read_log
from streamrec.encoder.vocab import ItemVocab

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_FORMATS",
    "BadLine",
    "DataFormat",
    "Interactions",
    "LoadReport",
    "load_interactions",
    "with_skipped",
]


@dataclass(frozen=True)
class LoadReport:
    """How much of an input was usable, and why the rest was not."""

    source: str
    format: str
    lines: int  # data records read (non-blank; CSV header excluded), bad ones included
    interactions: int  # kept, after bad lines and unknown items are removed
    users: int
    items: int  # distinct items among the kept interactions
    bad_lines: int = 0
    unknown_items: int = 0  # interactions dropped because a given vocabulary lacks the item
    bad_examples: tuple[BadLine, ...] = field(default_factory=tuple)
    skipped: int = 0  # events of types outside the allow-list (`--event-types`), not bad
    skipped_types: tuple[tuple[str, int], ...] = ()  # (type, count), most first; "untyped"

    def summary(self) -> str:
        """One line for the log and the terminal."""
        text = (
            f"{self.source} ({self.format}): {self.lines:,} lines -> {self.interactions:,} "
            f"interactions, {self.users:,} users, {self.items:,} items"
        )
        if self.bad_lines:
            text += f"; {self.bad_lines:,} bad lines skipped"
        if self.unknown_items:
            text += f"; {self.unknown_items:,} interactions with items unknown to the model dropped"
        if self.skipped:
            kinds = ", ".join(f"{name} {n:,}" for name, n in self.skipped_types[:5])
            text += f"; {self.skipped:,} events of other types skipped ({kinds})"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for `--json` output)."""
        return {
            "source": self.source, "format": self.format, "lines": self.lines,
            "interactions": self.interactions, "users": self.users, "items": self.items,
            "bad_lines": self.bad_lines, "unknown_items": self.unknown_items,
            "skipped": self.skipped, "skipped_types": dict(self.skipped_types),
            "bad_examples": [
                {"line": b.line, "reason": b.reason, "text": b.text} for b in self.bad_examples
            ],
        }


@dataclass(frozen=True)
class Interactions:
    """Per-user item-row sequences in time order, with the vocabulary that maps them."""

    users: list[str]  # external user ids, in order of first appearance
    sequences: list[np.ndarray]  # int64 rows (1..V), oldest first; views into one array
    vocab: ItemVocab
    report: LoadReport

    @property
    def num_users(self) -> int:
        """Users with at least one known interaction."""
        return len(self.users)

    @property
    def num_items(self) -> int:
        """V, the size of the vocabulary (rows 1..V); not only the items seen here."""
        return len(self.vocab)

    @property
    def num_interactions(self) -> int:
        """Total length of all sequences."""
        return int(sum(len(s) for s in self.sequences))

    def item_counts(self) -> np.ndarray:
        """float32 `[V + 1]` interaction count per row (popularity); row 0 is 0."""
        if not self.sequences:
            return np.zeros(self.num_items + 1, dtype=np.float32)
        flat = np.concatenate(self.sequences)
        counts = np.bincount(flat, minlength=self.num_items + 1).astype(np.float32)
        counts[0] = 0.0
        return counts

    @classmethod
    def from_pairs(
        cls,
        users: Iterable[str | int],
        items: Iterable[str | int],
        timestamps: Iterable[int | float] | None = None,
        *,
        vocab: ItemVocab | None = None,
        source: str = "pairs",
    ) -> Interactions:
        """Group (user, item[, timestamp]) columns into per-user sequences.

        With timestamps, each user's items are stably sorted by time (ties keep
        arrival order); without, arrival order is time order. Ids are str or int
        (int 42 is "42"). Without `vocab` one is built from the items
        (`ItemVocab.build`); with it, items it lacks are dropped and counted in
        `report.unknown_items`, and users left with nothing are dropped.
        """
        user_ids = [u if isinstance(u, str) else _id_str(u) for u in users]
        item_ids = [x if isinstance(x, str) else _id_str(x) for x in items]
        times = None if timestamps is None else _as_times(timestamps)
        if len(item_ids) != len(user_ids) or (times is not None and len(times) != len(user_ids)):
            raise DataFormatError(
                f"from_pairs needs columns of equal length: {len(user_ids)} users, "
                f"{len(item_ids)} items, {'no' if times is None else len(times)} timestamps"
            )
        return _group(user_ids, item_ids, times, vocab, source=source, fmt="pairs")


def load_interactions(
    path: str | Path,
    fmt: DataFormat,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str | None = "ts",
    type_field: str = "type",
    event_types: frozenset[str] | None = None,
    delimiter: str = ",",
    strict: bool = False,
    vocab: ItemVocab | None = None,
) -> Interactions:
    """Read an interaction log: `sasrec` (`user item` lines, time-ordered), `movielens`
    (`u.data` or `ratings.dat`, sorted by timestamp), `csv` (header row; columns named
    by the *_field arguments, `time_field=None` keeps file order) or `jsonl` (one
    object per line). Bad lines are skipped and reported (`strict=True` raises
    DataFormatError at the first one, with its line number). `vocab` maps items to
    rows; give the checkpoint's vocabulary when evaluating a trained model.
    `event_types` (csv/jsonl) keeps only events of those types (`type_field`
    column; see `formats.type_allowed` for events without one); the others are
    counted in `report.skipped`.
    """
    path = Path(path)
    started = time.perf_counter()
    log = read_log(
        path, fmt, user_field=user_field, item_field=item_field, time_field=time_field,
        type_field=type_field, event_types=event_types, delimiter=delimiter, strict=strict,
    )
    times = None if log.times is None else np.asarray(log.times, dtype=np.float64)
    data = _group(
        log.users, log.items, times, vocab, source=str(path), fmt=fmt, lines=log.lines,
        bad_lines=log.bad_lines, bad_examples=tuple(log.bad_examples),
    )
    if log.skipped.total:
        data = with_skipped(data, log.skipped)
    logger.info("loaded %s in %.2fs", data.report.summary(), time.perf_counter() - started)
    for bad in data.report.bad_examples:
        logger.warning("%s:%d: %s: %r", path, bad.line, bad.reason, bad.text)
    if not data.users:
        raise DataFormatError(
            f"{path}: no usable interactions ({data.report.summary()}); "
            "check --format and the field names"
        )
    return data


def _group(
    users: Sequence[str],
    items: Sequence[str],
    times: np.ndarray | None,
    vocab: ItemVocab | None,
    *,
    source: str,
    fmt: str,
    lines: int | None = None,
    bad_lines: int = 0,
    bad_examples: tuple[BadLine, ...] = (),
) -> Interactions:
    """Vocabulary rows, user codes in first-appearance order, stable sort by (user, time)."""
    if vocab is None:
        vocab = ItemVocab.build(items)
    rows = vocab.rows(items)  # [N] int64, 0 = unknown
    codes_of: dict[str, int] = {}
    codes = np.fromiter(
        (codes_of.setdefault(u, len(codes_of)) for u in users), dtype=np.int64, count=len(users)
    )
    names = list(codes_of)
    known = rows > 0
    unknown = int(len(rows) - known.sum())
    if unknown:
        rows, codes = rows[known], codes[known]
        times = None if times is None else times[known]
        kept = np.unique(codes)  # ascending = first-appearance order of surviving users
        remap = np.zeros(len(names), dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        codes = remap[codes]
        names = [names[i] for i in kept.tolist()]
    # lexsort is stable: equal timestamps keep arrival order.
    order = np.argsort(codes, kind="stable") if times is None else np.lexsort((times, codes))
    flat = rows[order]
    counts = np.bincount(codes, minlength=len(names))
    sequences = np.split(flat, np.cumsum(counts)[:-1]) if len(names) else []
    report = LoadReport(
        source=source, format=fmt, lines=len(users) + bad_lines if lines is None else lines,
        interactions=len(flat), users=len(names), items=int(np.unique(flat).size),
        bad_lines=bad_lines, unknown_items=unknown, bad_examples=bad_examples,
    )
    return Interactions(users=names, sequences=sequences, vocab=vocab, report=report)


def with_skipped(data: Interactions, skipped: SkipTally) -> Interactions:
    """`data` with its report counting the events skipped for their type."""
    ranked = tuple(sorted(skipped.by_type.items(), key=lambda kv: (-kv[1], kv[0])))
    report = dataclasses.replace(data.report, skipped=skipped.total, skipped_types=ranked)
    return dataclasses.replace(data, report=report)


def _id_str(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataFormatError(f"id {value!r} is a {type(value).__name__}; ids must be str or int")
    return str(int(value))


def _as_times(timestamps: Iterable[int | float]) -> np.ndarray:
    values = timestamps if isinstance(timestamps, np.ndarray) else list(timestamps)
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iuf"):
        raise DataFormatError("timestamps must be a flat sequence of numbers")
    return arr
