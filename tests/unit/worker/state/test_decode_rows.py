"""Bulk decoding of changelog values equals decoding them one by one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.encoder.vocab import ItemVocab
from streamrec.worker.errors import ChangelogError
from streamrec.worker.state.changelog import (
    HistoryRecord,
    decode_history,
    encode_history,
)
from streamrec.worker.state.changelog_bulk import BULK_MAX_ITEM_BYTES, ItemRows, decode_rows
from streamrec.worker.state.items import ItemTable

VOCAB = ItemVocab([f"item-{i}" for i in range(1, 60)] + ["é✓", "x" * 40])
LOOKUP = ItemRows(VOCAB.external(np.arange(1, len(VOCAB) + 1)))

item_ids = st.one_of(
    st.sampled_from(VOCAB.external(np.arange(1, len(VOCAB) + 1))),  # known
    st.text(max_size=12),  # mostly unknown, any unicode
    st.just("y" * (BULK_MAX_ITEM_BYTES + 1)),  # too long for the fast path
)
records = st.builds(
    lambda items, base, offset: HistoryRecord(tuple(items), tuple(base + i for i in
                                                                  range(len(items))), offset),
    st.lists(item_ids, max_size=70), st.integers(-2**40, 2**40), st.integers(-1, 2**40))


def expected(value: bytes, width: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """What the per-record path stores for `value` (None: it refuses the value)."""
    try:
        rec = decode_history(value)
    except ChangelogError:
        return None
    rows = VOCAB.rows(rec.items)
    known = rows > 0
    kept, kept_ts = rows[known][-width:], np.asarray(rec.ts, dtype=np.int64)[known][-width:]
    items, ts = np.zeros(width, dtype=np.int64), np.zeros(width, dtype=np.int64)
    if len(kept):
        items[width - len(kept):], ts[width - len(kept):] = kept, kept_ts
    return items, ts, rec.offset


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(records, st.integers(0, 2000), st.binary(max_size=3),
                          st.booleans()), min_size=1, max_size=12),
       st.integers(1, 60))
def test_bulk_decoding_matches_the_one_by_one_path(
    cases: list[tuple[HistoryRecord, int, bytes, bool]], width: int,
) -> None:
    values = []
    for record, cut, extra, damaged in cases:
        value = encode_history(record)
        values.append(value[:cut % (len(value) + 1)] + extra if damaged else value)
    items, ts, offsets, ok = decode_rows(values, LOOKUP, width)
    for i, value in enumerate(values):
        want = expected(value, width)
        if want is None:
            # Refused one by one: the fast path must refuse it too, unless the only fault
            # is an id that is not UTF-8 (it then maps to no row, as an unknown id).
            if ok[i]:
                with pytest.raises(ChangelogError, match="is not UTF-8"):
                    decode_history(value)
            continue
        if not ok[i]:  # left to the per-record path: allowed only for what it cannot take
            rec = decode_history(value)
            assert (len(rec.items) > 256
                    or any(len(x.encode()) > BULK_MAX_ITEM_BYTES for x in rec.items))
            continue
        np.testing.assert_array_equal(items[i], want[0])
        np.testing.assert_array_equal(ts[i], want[1])
        assert offsets[i] == want[2]


def test_an_empty_history_and_garbage() -> None:
    empty = encode_history(HistoryRecord((), (), 7))
    items, ts, offsets, ok = decode_rows([empty, b"", b"SRH", b"nonsense-bytes-here"], LOOKUP, 4)
    assert ok.tolist() == [True, False, False, False]
    assert offsets[0] == 7
    assert not items[0].any()
    assert not ts[0].any()


@settings(max_examples=100, deadline=None)
@given(st.lists(records, min_size=1, max_size=12), st.integers(1, 60))
def test_with_an_item_table_every_item_is_kept_known_or_not(
    recs: list[HistoryRecord], width: int,
) -> None:
    table = ItemTable(VOCAB)
    values = [encode_history(r) for r in recs]
    items, ts, offsets, ok = decode_rows(values, table.lookup(), width,
                                         missing=table.rows_of_bytes)
    for i, rec in enumerate(recs):
        if not ok[i]:  # only what the fast path never takes goes one by one
            assert (len(rec.items) > 256
                    or any(len(x.encode()) > BULK_MAX_ITEM_BYTES for x in rec.items))
            continue
        row = items[i][items[i] > 0]
        assert table.external(row) == list(rec.items[-width:] if rec.items else [])
        assert ts[i][items[i] > 0].tolist() == list(rec.ts[-width:] if rec.ts else [])
        assert offsets[i] == rec.offset


def test_an_item_id_that_is_not_utf8_refuses_the_record_with_an_item_table() -> None:
    good = encode_history(HistoryRecord(("item-1", "zz"), (1, 2), 3))
    bad = good.replace(b"zz", b"\xff\xfe")
    table = ItemTable(VOCAB)
    _, _, _, ok = decode_rows([good, bad], table.lookup(), 4, missing=table.rows_of_bytes)
    assert ok.tolist() == [True, False]


def test_every_id_of_a_large_vocabulary_finds_its_own_row_wherever_it_sits() -> None:
    # Ids of 1 to 30 bytes (one to four 8-byte words), found inside a buffer where
    # random bytes surround each one: the hash must read only the id's own bytes.
    rng = np.random.default_rng(1)
    ids = [f"{i}" for i in range(60_000)] + [f"item-{i:08d}-{'x' * (i % 13)}"
                                             for i in range(20_000)]
    lookup = ItemRows(ids)
    order = rng.permutation(len(ids))
    parts, starts, at = [], [], 0
    for i in order.tolist():
        noise = rng.integers(0, 256, rng.integers(0, 9)).astype(np.uint8).tobytes()
        parts += [noise, ids[i].encode()]
        starts.append(at + len(noise))
        at += len(noise) + len(ids[i].encode())
    buf = np.frombuffer(b"".join(parts), dtype=np.uint8)  # no padding after the last id
    lengths = np.array([len(ids[i].encode()) for i in order], dtype=np.int64)
    rows = lookup.rows(buf, np.array(starts, dtype=np.int64), lengths)
    assert rows.tolist() == (order + 1).tolist()
    strangers = np.frombuffer(b"60000item-0000000x-", dtype=np.uint8)
    assert lookup.rows(strangers, np.array([0, 5, 0]), np.array([5, 14, 0])).tolist() == [0] * 3
