"""The histories-changelog record format: round trips, limits, and refusals of bad bytes."""

from __future__ import annotations

import random
import re
import struct
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.worker.errors import ChangelogError
from streamrec.worker.state.changelog import (
    FORMAT_VERSION,
    MAGIC,
    HistoryRecord,
    changelog_topic,
    decode_history,
    encode_history,
)

TS = 1_700_000_000_000
_HEADER_SIZE = 3 + 1 + 8 + 2  # magic, version, offset, count

# st.text() draws no lone surrogates: every id it makes is encodable UTF-8.
histories = st.integers(min_value=0, max_value=40).flatmap(
    lambda n: st.builds(
        HistoryRecord,
        items=st.lists(st.text(max_size=30), min_size=n, max_size=n).map(tuple),
        ts=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n).map(tuple),
        offset=st.integers(-1, 2**63 - 1),
    ))


def test_topic_name_is_derived_from_the_group() -> None:
    assert changelog_topic("recs-prod") == "recs-prod-histories-changelog"


@pytest.mark.parametrize(
    "record",
    [
        HistoryRecord(items=("i1", "i2", "i3"), ts=(TS, TS + 1, TS + 2), offset=41),
        HistoryRecord(items=(), ts=(), offset=-1),
        HistoryRecord(items=("çà", "日本語", "🎧-folk", ""), ts=(TS,) * 4, offset=0),
        HistoryRecord(items=("x" * 0xFFFF,), ts=(TS,), offset=7),
        HistoryRecord(items=("é" * (0xFFFF // 2),), ts=(-1,), offset=2**63 - 1),
    ],
    ids=["plain", "empty", "unicode", "longest-id", "two-byte-chars"],
)
def test_round_trip(record: HistoryRecord) -> None:
    assert decode_history(encode_history(record)) == record


def test_layout_is_the_documented_big_endian_one() -> None:
    value = encode_history(HistoryRecord(items=("ab", "é"), ts=(1, 2), offset=5))
    assert value == (b"SRH" + bytes([1]) + struct.pack(">qH", 5, 2) + struct.pack(">2q", 1, 2)
                     + b"\x00\x02ab" + b"\x00\x02\xc3\xa9")


@settings(max_examples=300, deadline=None)
@given(histories)
def test_random_records_round_trip(record: HistoryRecord) -> None:
    assert decode_history(encode_history(record)) == record


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_are_refused(value: bytes) -> None:
    _decode_or_refuse(value)


@settings(max_examples=500, deadline=None)
@given(histories, st.binary(max_size=20), st.integers(0, 60))
def test_damaged_records_decode_or_are_refused(
    record: HistoryRecord, noise: bytes, cut: int,
) -> None:
    good = encode_history(record)
    cut = min(cut, len(good))
    # Overwrite bytes at a position past the magic: lengths, counts and text get hit.
    damaged = good[: 4 + cut] + noise + good[4 + cut + len(noise):]
    _decode_or_refuse(damaged)
    _decode_or_refuse(good[: len(good) - cut] if cut else good)


def _decode_or_refuse(value: bytes) -> str:
    """"accepted" (then the value must be canonical) or the refusal branch that ran."""
    try:
        record = decode_history(value)
    except ChangelogError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        branches = [name for name, pattern in REFUSALS.items() if re.search(pattern, message)]
        assert len(branches) == 1, f"{message} matches {branches}"
        return branches[0]
    assert len(record.items) == len(record.ts)
    assert encode_history(record) == value  # anything accepted is exactly canonical
    return "accepted"


# Every refusal of `decode_history`, by the message only that branch gives.
REFUSALS = {
    "short-header": r"shorter than the \d+-byte header",
    "magic": r"not a history record: magic",
    "version": r"history format version \d+",
    "negative-offset": r"offset -\d+ is negative",
    "short-timestamps": r"truncated: \d+ timestamps need",
    "no-length": r"truncated: item \d+ of \d+ has no length",
    "short-item": r"truncated: item \d+ needs \d+ bytes",
    "bad-utf8": r"item \d+ is not UTF-8",
    "trailing": r"\d+ trailing bytes after",
}


def _valid_records(rng: random.Random, n: int) -> list[bytes]:
    """Encodings of varied valid histories: 0..6 items, ASCII and multi-byte ids."""
    alphabet = ["a", "z", "7", "-", "é", "日", "🎧"]
    out = []
    for _ in range(n):
        count = rng.randint(0, 6)
        items = tuple("".join(rng.choices(alphabet, k=rng.randint(0, 5))) for _ in range(count))
        ts = tuple(rng.randint(-(2**63), 2**63 - 1) for _ in range(count))
        out.append(encode_history(HistoryRecord(items, ts, rng.randint(-1, 2**40))))
    return out


def test_fuzz_from_valid_encodings_reaches_every_refusal_branch() -> None:
    """Truncate, extend and overwrite bytes of valid records: each branch must run.

    Random bytes almost never get past the magic; starting from valid encodings
    puts the damage in the counts, the lengths and the text, where the subtle bugs
    (a read past the end, a length trusted, a surrogate accepted) would be.
    """
    rng = random.Random(7)
    seen: Counter[str] = Counter()
    for good in _valid_records(rng, 60):
        for cut in range(len(good)):  # every truncation
            seen[_decode_or_refuse(good[:cut])] += 1
        seen[_decode_or_refuse(good + rng.randbytes(rng.randint(1, 4)))] += 1  # extension
        for pos in range(len(good)):  # every byte overwritten, twice
            for value in (rng.randrange(256), 0xFF ^ good[pos]):
                seen[_decode_or_refuse(good[:pos] + bytes([value]) + good[pos + 1:])] += 1
        # A run of bytes overwritten past the header: counts, lengths and text at once.
        pos = rng.randrange(_HEADER_SIZE, len(good) + 1)
        noise = rng.randbytes(rng.randint(1, 8))
        seen[_decode_or_refuse(good[:pos] + noise + good[pos + len(noise):])] += 1
    assert set(seen) == {*REFUSALS, "accepted"}, seen


def _header(count: int, version: int = FORMAT_VERSION, magic: bytes = MAGIC) -> bytes:
    return magic + bytes([version]) + struct.pack(">qH", 3, count)


GOOD = encode_history(HistoryRecord(items=("i1", "i2"), ts=(TS, TS), offset=3))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "shorter than"),
        (GOOD[:10], "shorter than"),
        (b"XYZ" + GOOD[3:], "magic"),
        (GOOD[:3] + bytes([2]) + GOOD[4:], "version 2"),
        (GOOD[:3] + bytes([0]) + GOOD[4:], "version 0"),
        (_header(2) + struct.pack(">q", TS), "2 timestamps need 16 bytes"),
        (_header(0xFFFF), "65535 timestamps"),
        (_header(1) + struct.pack(">q", TS), "item 0 of 1 has no length"),
        (_header(1) + struct.pack(">q", TS) + b"\x00\x05ab", "item 0 needs 5 bytes"),
        (_header(1) + struct.pack(">q", TS) + b"\xff\xff" + b"x" * 10, "needs 65535 bytes"),
        (GOOD + b"\x00", "1 trailing bytes"),
        (_header(1) + struct.pack(">q", TS) + b"\x00\x02\xc3\x28", "not UTF-8"),
        (b"SRH\x01" + struct.pack(">qH", -2, 0), "negative"),
    ],
    ids=["empty", "short-header", "magic", "newer-version", "version-0", "short-ts",
         "huge-count", "no-length", "short-item", "huge-length", "trailing", "bad-utf8",
         "bad-offset"],
)
def test_refuses_malformed_values(value: bytes, message: str) -> None:
    with pytest.raises(ChangelogError, match=message):
        decode_history(value)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (HistoryRecord(items=("x" * 0x10000,), ts=(TS,), offset=0), "at most 65535"),
        (HistoryRecord(items=("a",) * 0x10000, ts=(TS,) * 0x10000, offset=0), "at most 65535"),
        (HistoryRecord(items=("a", "b"), ts=(TS,), offset=0), "2 items but 1 timestamps"),
        (HistoryRecord(items=("\ud800",), ts=(TS,), offset=0), "not encodable"),
        (HistoryRecord(items=("a",), ts=(2**63,), offset=0), "int64"),
        (HistoryRecord(items=(), ts=(), offset=2**63), "int64"),
    ],
    ids=["long-id", "too-many", "mismatch", "surrogate", "ts-overflow", "offset-overflow"],
)
def test_encode_enforces_the_format_limits(record: HistoryRecord, message: str) -> None:
    with pytest.raises(ChangelogError, match=message):
        encode_history(record)


def test_bulk_encoding_gives_the_same_bytes_as_one_record_at_a_time() -> None:
    """The worker writes with `encode_rows`; restores read with `decode_history`."""
    import numpy as np

    from streamrec.worker.state.changelog import encode_rows, item_id_table

    ids = ["", "a", "ü-2", "x" * 300, "42"]
    table = item_id_table(ids)
    items = np.array([[0, 0, 1, 2], [3, 4, 1, 1], [0, 0, 0, 0]])
    ts = np.array([[0, 0, 10, 11], [-5, 7, 8, 2**40], [0, 0, 0, 0]])
    offsets = np.array([17, -1, 3])
    values = encode_rows(items, ts, offsets, table)
    for row, t, offset, value in zip(items, ts, offsets, values, strict=True):
        known = row > 0
        record = HistoryRecord(items=tuple(ids[r] for r in row[known]),
                               ts=tuple(int(x) for x in t[known]), offset=int(offset))
        assert value == encode_history(record)
        assert decode_history(value) == record
