"""Line parsers for the interaction-log formats `streamrec train/evaluate` read.

Each parser turns one file into three parallel columns (user ids, item ids,
optional timestamps) and a tally of the lines it could not use. A bad line is
counted, and the first few are kept with their line number and reason; it stops
the run only when the caller asks for `strict`. The hot loops do one `split`
(or one `json.loads`) per line and append to lists: games.txt's 287k lines parse
in well under a second. Grouping, sorting and the vocabulary are `data.py`'s job.

Event types: csv and jsonl rows may carry a type (`type_field`, e.g. view or
purchase). With an allow-list (`event_types`), rows of other types are skipped and
counted per type, never reported as bad. `type_allowed` is the one statement of the
rule, shared with the worker's event contract (`streamrec.worker.validate`): no
allow-list keeps everything; with one, a row without a type is kept only when the
list names `UNTYPED`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO, get_args

from streamrec.encoder.errors import DataFormatError

logger = logging.getLogger(__name__)

DataFormat = Literal["sasrec", "movielens", "csv", "jsonl"]
DATA_FORMATS: tuple[str, ...] = get_args(DataFormat)

MAX_BAD_EXAMPLES = 5
UNTYPED = "untyped"  # in an allow-list: events without a type; the label of their count
MAX_TYPE_COUNTS = 20  # distinct skipped types counted by name; the rest as OTHER_TYPES
OTHER_TYPES = "other"
_REPLACEMENT = "\ufffd"  # what undecodable UTF-8 bytes turn into


def type_allowed(event_type: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether an event of `event_type` (None: it has none) counts under `allowed`.

    `allowed` None means every event counts, typed or not. With an allow-list an
    event without a type counts only when the list holds `UNTYPED` (so does an event
    whose type is literally "untyped").
    """
    if allowed is None:
        return True
    return (UNTYPED if event_type is None else event_type) in allowed


@dataclass
class SkipTally:
    """Events skipped for their type: the total, and a count per type for the first
    MAX_TYPE_COUNTS types (the rest as OTHER_TYPES), so made-up types stay bounded."""

    total: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def add(self, event_type: str | None) -> None:
        """Count one skipped event of `event_type` (None: it had none)."""
        self.total += 1
        label = UNTYPED if event_type is None else event_type
        if label not in self.by_type and len(self.by_type) >= MAX_TYPE_COUNTS:
            label = OTHER_TYPES
        self.by_type[label] = self.by_type.get(label, 0) + 1


@dataclass(frozen=True)
class BadLine:
    """One line that was skipped, for the load report."""

    line: int  # 1-based physical line number
    reason: str
    text: str  # the start of the line, for the operator to find it


@dataclass
class ParsedLog:
    """Parallel columns of a log file plus its bad-line tally (built by a parser)."""

    source: str
    fmt: str
    strict: bool
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    times: list[float] | None = None
    lines: int = 0  # non-blank data lines seen (bad ones included; header excluded)
    bad_lines: int = 0
    bad_examples: list[BadLine] = field(default_factory=list)
    skipped: SkipTally = field(default_factory=SkipTally)  # rows of types not allowed

    def bad(self, line: int, reason: str, text: str) -> None:
        """Count a bad line; raise when strict."""
        text = text.rstrip("\r\n")[:120]
        if self.strict:
            raise DataFormatError(
                f"{self.source}:{line}: {reason}: {text!r} "
                "(run without --strict to skip bad lines and report them)"
            )
        self.bad_lines += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append(BadLine(line, reason, text))


def read_log(
    path: Path,
    fmt: DataFormat,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str | None = "ts",
    type_field: str = "type",
    event_types: frozenset[str] | None = None,
    delimiter: str = ",",
    strict: bool = False,
) -> ParsedLog:
    """Parse `path` in `fmt`; `.gz` files are decompressed on the fly.

    With `event_types` (csv and jsonl only: the other formats carry no type), rows
    whose `type_field` is not allowed (`type_allowed`) are skipped and counted.
    """
    if fmt not in DATA_FORMATS:
        raise DataFormatError(
            f"unknown data format {fmt!r}; choose one of {', '.join(DATA_FORMATS)}"
        )
    if event_types is not None and fmt not in ("csv", "jsonl"):
        raise DataFormatError(
            f"{fmt} logs carry no event type, so they cannot be filtered by type: drop "
            "--event-types, or use a csv/jsonl log (or --from-topic)"
        )
    if not path.is_file():
        raise DataFormatError(f"interaction log {path} does not exist or is not a file")
    log = ParsedLog(source=str(path), fmt=fmt, strict=strict)
    with _open_text(path) as f:
        if fmt == "sasrec":
            _parse_sasrec(f, log)
        elif fmt == "movielens":
            _parse_movielens(f, log)
        elif fmt == "csv":
            _parse_csv(f, log, _Columns(user_field, item_field, time_field, type_field),
                       event_types, delimiter)
        else:
            _parse_jsonl(f, log, _Columns(user_field, item_field, time_field, type_field),
                         event_types)
    return log


@dataclass(frozen=True)
class _Columns:
    """The csv columns / jsonl fields that hold each part of an interaction."""

    user: str
    item: str
    time: str | None  # None: file order is time order
    type: str


def _open_text(path: Path) -> TextIO:
    # errors="replace": one bad byte must cost one line, not the whole file.
    binary = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")


def _parse_sasrec(f: TextIO, log: ParsedLog) -> None:
    """`user item` per line, whitespace-separated, each user's lines in time order."""
    users, items = log.users, log.items
    for no, line in enumerate(f, 1):
        parts = line.split()
        if len(parts) == 2 and _REPLACEMENT not in line:
            users.append(parts[0])
            items.append(parts[1])
        elif parts:
            log.bad(no, _why_not(parts, 2, line), line)
    log.lines = len(users) + log.bad_lines


def _parse_movielens(f: TextIO, log: ParsedLog) -> None:
    """`u.data` (`user item rating ts`, tab) or `ratings.dat` (`user::item::rating::ts`)."""
    users, items = log.users, log.items
    times: list[float] = []
    sep: str | None = None  # decided by the first non-blank line
    for no, line in enumerate(f, 1):
        if sep is None:
            if not line.strip():
                continue
            sep = "::" if "::" in line else ""
            kind = "ratings.dat (::)" if sep else "u.data (tab)"
            logger.debug("movielens file %s: %s", log.source, kind)
        parts = line.strip().split(sep) if sep else line.split()
        if len(parts) == 4 and _REPLACEMENT not in line:
            ts = _parse_time(parts[3])
            if ts is not None and _is_number(parts[2]) and parts[0] and parts[1]:
                users.append(parts[0])
                items.append(parts[1])
                times.append(ts)
            else:
                log.bad(no, "rating or timestamp is not a number", line)
        elif line.strip():
            log.bad(no, _why_not(parts, 4, line), line)
    log.times = times
    log.lines = len(users) + log.bad_lines


def _parse_csv(
    f: TextIO, log: ParsedLog, cols: _Columns, event_types: frozenset[str] | None,
    delimiter: str,
) -> None:
    """A header row naming the columns, then one interaction per row."""
    reader = csv.reader(f, delimiter=delimiter)
    header = next((row for row in reader if row), None)
    if header is None:
        raise DataFormatError(f"{log.source}: empty CSV file (no header row)")
    header = [h.strip() for h in header]
    wanted = [cols.user, cols.item] + ([cols.time] if cols.time else [])
    if event_types is not None:
        wanted.append(cols.type)  # only a filter needs the type column
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DataFormatError(
            f"{log.source}: CSV header has no column {', '.join(map(repr, missing))} "
            f"(columns: {header}); name them with --user-field/--item-field/--time-field"
            "/--type-field (an empty --time-field keeps file order)"
        )
    ui, ii = header.index(cols.user), header.index(cols.item)
    ti = header.index(cols.time) if cols.time else -1
    ki = header.index(cols.type) if event_types is not None else -1
    width = len(header)
    times: list[float] = []
    for row in reader:
        if not row:
            continue
        log.lines += 1
        no = reader.line_num
        if len(row) != width:
            log.bad(no, f"expected {width} fields, got {len(row)}", delimiter.join(row))
            continue
        user, item = row[ui].strip(), row[ii].strip()
        if not user or not item or _REPLACEMENT in user or _REPLACEMENT in item:
            log.bad(no, "empty or undecodable user or item id", delimiter.join(row))
            continue
        if ti >= 0:
            ts = _parse_time(row[ti])
            if ts is None:
                log.bad(no, f"{cols.time} {row[ti]!r} is not a timestamp", delimiter.join(row))
                continue
        if ki >= 0:
            event_type = row[ki].strip() or None  # an empty cell: no type
            if not type_allowed(event_type, event_types):
                log.skipped.add(event_type)
                continue
        if ti >= 0:
            times.append(ts)
        log.users.append(user)
        log.items.append(item)
    log.times = times if cols.time else None


def _parse_jsonl(
    f: TextIO, log: ParsedLog, cols: _Columns, event_types: frozenset[str] | None,
) -> None:
    """One JSON object per line; ids are str or int, the timestamp a number or ISO-8601 text."""
    times: list[float] = []
    for no, line in enumerate(f, 1):
        if not line.strip():
            continue
        log.lines += 1
        try:
            record = json.loads(line)
        except ValueError:
            log.bad(no, "not valid JSON", line)
            continue
        if not isinstance(record, dict):
            log.bad(no, "not a JSON object", line)
            continue
        user, item = _json_id(record.get(cols.user)), _json_id(record.get(cols.item))
        if user is None or item is None:
            log.bad(no, f"{cols.user!r} and {cols.item!r} must be non-empty str or int", line)
            continue
        if cols.time:
            ts = _parse_time(record.get(cols.time))
            if ts is None:
                log.bad(no, f"{cols.time!r} missing or not a timestamp", line)
                continue
        if event_types is not None:
            event_type = record.get(cols.type)
            if event_type is not None and not isinstance(event_type, str):
                log.bad(no, f"{cols.type!r} must be a string when present", line)
                continue
            if not type_allowed(event_type, event_types):
                log.skipped.add(event_type)
                continue
        if cols.time:
            times.append(ts)
        log.users.append(user)
        log.items.append(item)
    log.times = times if cols.time else None


def _json_id(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value and _REPLACEMENT not in value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _parse_time(value: Any) -> float | None:
    """A finite number (epoch seconds or ms, as the file has it) or ISO-8601 text; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                number = datetime.fromisoformat(text).timestamp()
            except ValueError:
                return None
    return number if math.isfinite(number) else None


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _why_not(parts: list[str], expected: int, line: str) -> str:
    if _REPLACEMENT in line:
        return "not valid UTF-8"
    return f"expected {expected} fields, got {len(parts)}"

