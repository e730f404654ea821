"""`--event-types` on interaction logs: csv/jsonl rows of other types skipped and counted.

The same allow-list rule as the worker's (`type_allowed`, shared with
`streamrec.worker.validate`), and the same flags through `streamrec train` and
`streamrec evaluate` (`add_data_flags` / `load_data`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.cli.flags import load_data, parse_event_types
from streamrec.cli.main import build_parser, main
from streamrec.encoder.data import Interactions, load_interactions
from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.formats import MAX_TYPE_COUNTS, type_allowed
from streamrec.worker.validate import Event, EventFilter

VIEW_PURCHASE = frozenset({"view", "purchase"})


def _seqs(data: Interactions) -> dict[str, list[str]]:
    return {u: data.vocab.external(s) for u, s in zip(data.users, data.sequences, strict=True)}


def _jsonl(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS: list[dict[str, object]] = [
    {"user_id": "u1", "item_id": "a", "ts": 1, "type": "view"},
    {"user_id": "u1", "item_id": "b", "ts": 2, "type": "click"},
    {"user_id": "u1", "item_id": "c", "ts": 3, "type": "purchase"},
    {"user_id": "u2", "item_id": "a", "ts": 1},  # untyped
    {"user_id": "u2", "item_id": "d", "ts": 2, "type": "click"},
    {"user_id": "u3", "item_id": "e", "ts": 1, "type": "view"},
]


@pytest.mark.parametrize(("event_type", "allowed", "kept"), [
    ("view", None, True), (None, None, True),
    ("view", VIEW_PURCHASE, True), ("click", VIEW_PURCHASE, False),
    (None, VIEW_PURCHASE, False), (None, frozenset({"view", "untyped"}), True),
    ("VIEW", VIEW_PURCHASE, False),
])
def test_one_rule_for_files_and_the_worker(event_type: str | None,
                                           allowed: frozenset[str] | None, kept: bool) -> None:
    assert type_allowed(event_type, allowed) is kept
    assert EventFilter(allowed).accepts(Event("u", "i", 0, event_type)) is kept


def test_jsonl_keeps_only_allowed_types_and_counts_the_rest(tmp_path: Path) -> None:
    data = load_interactions(_jsonl(tmp_path, ROWS), "jsonl", event_types=VIEW_PURCHASE)
    assert _seqs(data) == {"u1": ["a", "c"], "u3": ["e"]}
    report = data.report
    assert (report.lines, report.interactions, report.bad_lines, report.skipped) == (6, 3, 0, 3)
    assert report.skipped_types == (("click", 2), ("untyped", 1))
    assert "3 events of other types skipped (click 2, untyped 1)" in report.summary()
    assert report.as_dict()["skipped_types"] == {"click": 2, "untyped": 1}


def test_without_an_allow_list_every_row_counts_and_types_are_not_read(tmp_path: Path) -> None:
    rows = [*ROWS, {"user_id": "u4", "item_id": "f", "ts": 1, "type": 5}]
    data = load_interactions(_jsonl(tmp_path, rows), "jsonl")
    assert data.num_interactions == 7
    assert data.report.skipped == 0
    assert "skipped" not in data.report.summary()


def test_a_non_string_type_is_a_bad_line_under_an_allow_list(tmp_path: Path) -> None:
    rows = [*ROWS, {"user_id": "u4", "item_id": "f", "ts": 1, "type": 5}]
    data = load_interactions(_jsonl(tmp_path, rows), "jsonl", event_types=VIEW_PURCHASE)
    assert data.report.bad_lines == 1
    assert "must be a string" in data.report.bad_examples[0].reason


def test_untyped_rows_are_kept_when_the_list_says_untyped(tmp_path: Path) -> None:
    data = load_interactions(_jsonl(tmp_path, ROWS), "jsonl",
                             event_types=frozenset({"purchase", "untyped"}))
    assert _seqs(data) == {"u1": ["c"], "u2": ["a"]}


def test_csv_type_column_named_by_flag_empty_cell_is_untyped(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,ts,kind\nu1,a,1,view\nu1,b,2,click\nu1,c,3,\n"
                    "u2,d,1,purchase\n", encoding="utf-8")
    data = load_interactions(path, "csv", type_field="kind", event_types=VIEW_PURCHASE)
    assert _seqs(data) == {"u1": ["a"], "u2": ["d"]}
    assert data.report.skipped_types == (("click", 1), ("untyped", 1))
    # No allow-list: the type column is neither needed nor read.
    assert load_interactions(path, "csv", type_field="absent").num_interactions == 4


def test_csv_without_the_type_column_cannot_be_filtered(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,ts\nu1,a,1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"no column 'type'.*--type-field"):
        load_interactions(path, "csv", event_types=VIEW_PURCHASE)


def test_formats_without_types_refuse_a_filter(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("u1 a\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="sasrec logs carry no event type"):
        load_interactions(path, "sasrec", event_types=VIEW_PURCHASE)


def test_the_skipped_tally_is_bounded(tmp_path: Path) -> None:
    rows = [{"user_id": "u", "item_id": "a", "ts": n, "type": f"t{n}"} for n in range(100)]
    rows.append({"user_id": "u", "item_id": "a", "ts": 0, "type": "view"})
    data = load_interactions(_jsonl(tmp_path, rows), "jsonl", event_types=VIEW_PURCHASE)
    assert data.report.skipped == 100
    assert len(data.report.skipped_types) == MAX_TYPE_COUNTS + 1
    assert ("other", 100 - MAX_TYPE_COUNTS) in data.report.skipped_types


@pytest.mark.parametrize(("text", "parsed"), [
    (None, None), ("", None), (" , ", None), ("view", frozenset({"view"})),
    ("view, purchase,", frozenset({"view", "purchase"})),
])
def test_flag_value_parsing(text: str | None, parsed: frozenset[str] | None) -> None:
    assert parse_event_types(text) == parsed


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_take_the_flags_and_the_env(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _jsonl(tmp_path, ROWS)
    extra = ["--out", str(tmp_path / "out")] if command == "train" else ["--model", "m"]
    args = build_parser().parse_args(
        [command, "--data", str(path), "--format", "jsonl", "--event-types", "purchase,view",
         *extra])
    assert _seqs(load_data(args)) == {"u1": ["a", "c"], "u3": ["e"]}

    monkeypatch.setenv("STREAMREC_EVENT_TYPES", "click")
    args = build_parser().parse_args([command, "--data", str(path), "--format", "jsonl",
                                      *extra])
    assert _seqs(load_data(args)) == {"u1": ["b"], "u2": ["d"]}


def test_train_records_the_types_it_learnt_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [{"user_id": f"u{u}", "item_id": f"i{(u + k) % 12}", "ts": k,
             "type": "purchase" if k % 2 else "view"} for u in range(30) for k in range(8)]
    path = _jsonl(tmp_path, rows)
    out = tmp_path / "model"
    code = main(["train", "--data", str(path), "--format", "jsonl", "--event-types", "purchase",
                 "--out", str(out), "--preset", "demo", "--epochs", "1", "--device", "cpu",
                 "--max-len", "4", "--hidden", "8", "--json", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["event_types"] == ["purchase"]
    assert summary["data"]["interactions"] == 120
    assert summary["data"]["skipped_types"] == {"view": 120}
    meta = json.loads((out / "config.json").read_text())
    assert "purchase" in json.dumps(meta)
