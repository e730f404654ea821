"""Loaders: each format on a small fixture, bad lines counted (or fatal with strict)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from streamrec.encoder.data import DATA_FORMATS, Interactions, load_interactions
from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.vocab import ItemVocab


def _seqs(data: Interactions) -> dict[str, list[str]]:
    """user -> external item ids in time order (what a user of the API sees)."""
    return {u: data.vocab.external(s) for u, s in zip(data.users, data.sequences, strict=True)}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_format_names_for_argparse() -> None:
    assert DATA_FORMATS == ("sasrec", "movielens", "csv", "jsonl")


def test_sasrec_keeps_file_order_and_reports_bad_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.txt", "1 10\n1 11\n2 10\n\nthree words here\n3\n2 12\n1 10\n")
    data = load_interactions(path, "sasrec")
    assert _seqs(data) == {"1": ["10", "11", "10"], "2": ["10", "12"]}
    report = data.report
    assert (report.lines, report.interactions, report.users, report.items) == (7, 5, 2, 3)
    assert report.bad_lines == 2
    assert [b.line for b in report.bad_examples] == [5, 6]
    assert "expected 2 fields" in report.bad_examples[0].reason
    assert "2 bad lines" in report.summary()


def test_strict_fails_at_the_first_bad_line_with_its_number(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.txt", "1 10\n1 11 12\n")
    with pytest.raises(DataFormatError, match=r"log\.txt:2: expected 2 fields"):
        load_interactions(path, "sasrec", strict=True)


def test_undecodable_bytes_cost_one_line(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes(b"1 10\n1 \xff\xfe\n1 11\n")
    data = load_interactions(path, "sasrec")
    assert _seqs(data) == {"1": ["10", "11"]}
    assert data.report.bad_examples[0].line == 2
    assert "UTF-8" in data.report.bad_examples[0].reason


def test_gzip_files_are_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "log.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("u1 a\nu1 b\n")
    assert _seqs(load_interactions(path, "sasrec")) == {"u1": ["a", "b"]}


def test_movielens_udata_is_sorted_by_timestamp(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "u.data",
        "1\t10\t5\t300\n1\t11\t3\t100\n2\t10\t4\t200\n1\tx\n2\t12\t4\tlater\n1\t12\t4\t300\n",
    )
    data = load_interactions(path, "movielens")
    # equal timestamps (300) keep file order
    assert _seqs(data) == {"1": ["11", "10", "12"], "2": ["10"]}
    assert data.report.bad_lines == 2
    assert [b.line for b in data.report.bad_examples] == [4, 5]


def test_movielens_ratings_dat_double_colon(tmp_path: Path) -> None:
    path = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                  "1::914::3::978301968\n2::1193::x::978300000\n")
    data = load_interactions(path, "movielens")
    assert _seqs(data) == {"1": ["1193", "914", "661"]}
    assert data.report.bad_lines == 1


def test_csv_columns_named_by_flags(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "events.csv",
        "who;what;when;extra\n"
        "u1;i2;2024-01-02T00:00:00;x\n"
        "u1;i1;2024-01-01T00:00:00;x\n"
        "u2;\"i;3\";5;x\n"
        "u2;i4;not-a-time;x\n"
        "u2;i5\n"
        ";i6;7;x\n",
    )
    data = load_interactions(
        path, "csv", user_field="who", item_field="what", time_field="when", delimiter=";"
    )
    assert _seqs(data) == {"u1": ["i1", "i2"], "u2": ["i;3"]}
    assert data.report.lines == 6
    assert data.report.bad_lines == 3
    assert [b.line for b in data.report.bad_examples] == [5, 6, 7]


def test_csv_without_time_column_keeps_file_order(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.csv", "user_id,item_id\nu,b\nu,a\n")
    assert _seqs(load_interactions(path, "csv", time_field=None)) == {"u": ["b", "a"]}


def test_csv_missing_column_is_fatal_even_without_strict(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.csv", "user,item\nu,a\n")
    with pytest.raises(DataFormatError, match="no column 'user_id'"):
        load_interactions(path, "csv")


def test_jsonl_accepts_str_and_int_ids_and_skips_bad_records(tmp_path: Path) -> None:
    lines = [
        {"user_id": 7, "item_id": "b", "ts": 20},
        {"user_id": "7", "item_id": 3, "ts": 10, "type": "view"},
        "not json",
        [1, 2],
        {"user_id": True, "item_id": "c", "ts": 1},
        {"user_id": "8", "item_id": "c"},
        {"user_id": "8", "item_id": 1.5, "ts": 1},
        {"user_id": "9", "item_id": "d", "ts": 5},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    data = load_interactions(_write(tmp_path, "e.jsonl", text), "jsonl")
    assert _seqs(data) == {"7": ["3", "b"], "9": ["d"]}
    assert data.report.bad_lines == 5
    assert [b.line for b in data.report.bad_examples] == [3, 4, 5, 6, 7]


def test_given_vocab_drops_and_counts_unknown_items(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.txt", "1 a\n1 new\n2 new\n3 b\n")
    vocab = ItemVocab(["a", "b", "c"])
    data = load_interactions(path, "sasrec", vocab=vocab)
    assert data.vocab is vocab
    assert _seqs(data) == {"1": ["a"], "3": ["b"]}  # user 2 had only unknown items
    assert data.report.unknown_items == 2
    assert data.num_items == 3


def test_nothing_usable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no usable interactions"):
        load_interactions(_write(tmp_path, "log.txt", "garbage\n"), "sasrec")


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="does not exist"):
        load_interactions(tmp_path / "nope.txt", "sasrec")
    with pytest.raises(DataFormatError, match="unknown data format"):
        load_interactions(_write(tmp_path, "x", "1 2\n"), "parquet")  # type: ignore[arg-type]


def test_from_pairs_stable_sort_by_time_and_helpers() -> None:
    data = Interactions.from_pairs(
        users=["u", "v", "u", "u", 5],
        items=[30, "10", 10, 20, 10],
        timestamps=[3, 0, 1, 1, 9],
    )
    assert data.users == ["u", "v", "5"]
    assert _seqs(data) == {"u": ["10", "20", "30"], "v": ["10"], "5": ["10"]}
    assert data.vocab.ids == ["10", "20", "30"]
    assert data.num_items == 3
    assert data.num_interactions == 5
    counts = data.item_counts()
    assert counts.dtype == np.float32
    np.testing.assert_array_equal(counts, [0, 3, 1, 1])
    assert all(s.dtype == np.int64 for s in data.sequences)


def test_from_pairs_without_timestamps_uses_arrival_order() -> None:
    data = Interactions.from_pairs(["a", "b", "a"], ["x", "y", "z"])
    assert _seqs(data) == {"a": ["x", "z"], "b": ["y"]}


def test_from_pairs_rejects_ragged_columns() -> None:
    with pytest.raises(DataFormatError, match="equal length"):
        Interactions.from_pairs(["a", "b"], ["x"])
