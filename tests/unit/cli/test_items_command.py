"""`streamrec items publish`: a catalogue file checked whole, then sent in file order,
retire lines as tombstones; the worker's `--items-topic` reads its env variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.cli.main import build_parser, main
from streamrec.eventlog.items import publish_items, read_catalogue
from streamrec.kafka_io.port import DeliveryReport
from streamrec.worker.item_records import ItemRecord, parse_item_record
from streamrec.worker.validate import Limits


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    def send(self, topic: str, value: bytes | None, key: bytes | None = None,
             **_: object) -> DeliveryReport:
        self.sent.append((topic, key, value))
        report = DeliveryReport()
        report.acknowledged(0, len(self.sent) - 1)
        return report

    def poll(self, timeout_s: float = 0.0) -> None:
        pass

    def flush(self, timeout_s: float = 120.0) -> bool:
        return True


def write(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_a_file_is_published_in_order_with_tombstones_for_retire_lines(tmp_path: Path) -> None:
    data = write(tmp_path / "items.jsonl",
                 {"item_id": "a", "features": {"categories": ["x"], "vector": [1, 2]}},
                 "",
                 {"item_id": 7, "available": False},
                 {"item_id": "a", "retire": True})
    catalogue = read_catalogue(data, Limits())
    assert catalogue.retired == 1
    producer = FakeProducer()
    assert publish_items(producer, "items", catalogue) == 3  # type: ignore[arg-type]
    assert [(k, v is None) for _, k, v in producer.sent] == [
        (b"a", False), (b"7", False), (b"a", True)]
    parsed = [parse_item_record(k, v, Limits()) for _, k, v in producer.sent]
    assert [(p.item_id, p.available, p.tombstone) for p in parsed
            if isinstance(p, ItemRecord)] == [("a", True, False), ("7", False, False),
                                              ("a", False, True)]


def test_a_file_with_bad_lines_publishes_nothing_and_names_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = write(tmp_path / "bad.jsonl", {"item_id": "a"}, "{not json",
                 {"item_id": "b", "available": "yes"}, {"item_id": "c", "retire": 1})
    # No broker at this address: the file is refused before anything connects.
    assert main(["items", "publish", "--data", str(data), "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "3 bad lines, nothing published" in err
    assert "line 2: not JSON" in err
    assert "line 3: bad_available" in err
    assert "line 4: a retire line" in err


def test_items_topic_flags_read_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_ITEMS_TOPIC", "catalogue")
    parser = build_parser()
    assert parser.parse_args(["items", "publish", "--data", "f"]).items_topic == "catalogue"
    assert parser.parse_args(["worker", "--model", "m"]).items_topic == "catalogue"
    monkeypatch.delenv("STREAMREC_ITEMS_TOPIC")
    assert build_parser().parse_args(["worker", "--model", "m"]).items_topic == "items"
