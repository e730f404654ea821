"""Item features: one set of rules for the items topic and for `train --item-features`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.features import ItemFeatures, parse_features, read_item_features


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def test_parse_features_keeps_every_field() -> None:
    parsed = parse_features({"categories": ["a", "b"], "text": "hi", "vector": [1, 0.5],
                             "unknown": 3}, max_chars=16)
    assert isinstance(parsed, ItemFeatures)
    assert parsed.categories == ("a", "b")
    assert parsed.text == "hi"
    assert parsed.vector is not None
    assert parsed.vector.dtype == np.float32
    assert parsed.vector.tolist() == [1.0, 0.5]
    assert parse_features({}, max_chars=16) == ItemFeatures()


@pytest.mark.parametrize("doc", [[], {"categories": "a"}, {"categories": ["x" * 17]},
                                 {"text": 3}, {"vector": []}, {"vector": [1, True]},
                                 {"vector": [float("nan")]}, {"vector": [1e39]}])
def test_parse_features_says_what_is_wrong(doc: object) -> None:
    assert isinstance(parse_features(doc, max_chars=16), str)


def test_later_lines_replace_earlier_ones_and_retire_lines_drop_the_item(
        tmp_path: Path) -> None:
    file = write_lines(tmp_path / "items.jsonl", [
        {"item_id": "a", "features": {"categories": ["old"]}},
        {"item_id": 7, "available": False, "features": {"text": "seven", "vector": [1, 2]}},
        {"item_id": "b", "features": {"categories": ["b"]}},
        "",
        {"item_id": "a", "features": {"categories": ["new"]}},
        {"item_id": "b", "retire": True},
        {"item_id": "c"},  # known, without features
        {"item_id": "d", "features": {"text": "d"}},
        {"item_id": "d", "features": None},  # a record is the whole state: none now
    ])
    features = read_item_features(file)
    assert set(features) == {"a", "7"}  # int ids are spelled as the vocabulary spells them
    assert features["a"].categories == ("new",)
    assert features["7"].text == "seven"  # a retired item still says what it was like


def test_bad_lines_are_skipped_and_logged_with_their_numbers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = write_lines(tmp_path / "items.jsonl", [
        {"item_id": "a", "features": {"text": "ok"}},
        "not json",
        {"item_id": "b", "features": {"vector": "1 2"}},
        {"item_id": " c", "features": {}},
        {"item_id": "e", "retire": "yes"},
        {"item_id": "f", "available": "no"},
    ])
    with caplog.at_level(logging.WARNING, logger="streamrec.encoder.features"):
        features = read_item_features(file)
    assert list(features) == ["a"]
    assert [r.getMessage().split(": ", 1)[0] for r in caplog.records] == [
        f"{file}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "features.vector" in caplog.records[1].getMessage()


def test_a_file_without_a_valid_line_is_refused(tmp_path: Path) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", ["[1, 2]", {"features": {}}])
    with pytest.raises(DataFormatError, match=r"none of its 2 lines.*line 1"):
        read_item_features(bad)
    empty = write_lines(tmp_path / "empty.jsonl", [""])
    with pytest.raises(DataFormatError, match="no item records"):
        read_item_features(empty)
    with pytest.raises(DataFormatError, match="cannot read"):
        read_item_features(tmp_path / "missing.jsonl")
