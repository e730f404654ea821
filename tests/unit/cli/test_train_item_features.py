"""`streamrec train --item-features FILE`: a checkpoint with a content tower, kept by
`--warm-start`; the tower's flags without features are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.cli.main import main
from streamrec.encoder.checkpoint import load_checkpoint


def write_log(path: Path, items: int) -> Path:
    lines = (f"u{u} i{(u * 7 + t) % items + 1}\n" for u in range(120) for t in range(6))
    path.write_text("".join(lines), encoding="utf-8")
    return path


def write_features(path: Path, items: int) -> Path:
    records = [{"item_id": f"i{n}", "features": {"categories": [f"c{n % 5}"],
                                                  "text": f"item {n}", "vector": [n, 1.0]}}
               for n in range(1, items + 1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def train(*argv: str) -> int:
    return main(["train", "--format", "sasrec", "--preset", "demo", "--no-progress",
                 "--epochs", "1", "--json", *argv])


def test_item_features_give_the_checkpoint_a_tower_that_warm_starts_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log = write_log(tmp_path / "log.txt", 60)
    features = write_features(tmp_path / "items.jsonl", 64)
    out = tmp_path / "model"
    assert train("--data", str(log), "--out", str(out), "--item-features",
                 str(features), "--feature-buckets", "512", "--id-dropout", "0.3",
                 "--feature-min-items", "3", "--token-dropout", "0.1",
                 "--no-feature-unknown-rows") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["content"]["items_with_features"] == 60
    ckpt = load_checkpoint(out)
    assert ckpt.content is not None
    assert (ckpt.content.buckets, ckpt.content.id_dropout, ckpt.content.vector_dim,
            ckpt.content.min_items, ckpt.content.token_dropout,
            ckpt.content.unknown_rows) == (512, 0.3, 2, 3, 0.1, False)
    grown = write_log(tmp_path / "new.txt", 64)
    assert train("--data", str(grown), "--out", str(tmp_path / "warm"),
                 "--warm-start", str(out), "--item-features", str(features)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["warm_start"]["new_items"] == 4
    assert summary["content"]["items_with_features"] == 64
    assert summary["content"]["buckets"] == 512


def test_tower_flags_need_item_features(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log.txt", 60)
    assert train("--data", str(log), "--out", str(tmp_path / "m"),
                 "--feature-buckets", "512") == 2
    assert "give --item-features FILE" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    assert train("--data", str(log), "--out", str(tmp_path / "m"),
                 "--item-features", str(bad)) == 2
    assert "none of its 1 lines" in capsys.readouterr().err
