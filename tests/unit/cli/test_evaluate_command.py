"""`streamrec evaluate` end to end on a tiny untrained checkpoint and a tiny log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamrec.cli.main import main

checkpoint = pytest.importorskip("streamrec.encoder.checkpoint")
config_mod = pytest.importorskip("streamrec.encoder.config")
model_mod = pytest.importorskip("streamrec.encoder.model")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    from streamrec.encoder.vocab import ItemVocab

    vocab = ItemVocab([f"i{n}" for n in range(1, 13)])
    config = config_mod.ModelConfig(num_items=len(vocab), max_len=6, hidden=8, blocks=1)
    model = model_mod.SASRec(config)
    popularity = np.ones(len(vocab) + 1, dtype=np.float32)
    popularity[0] = 0
    return checkpoint.save_checkpoint(tmp_path / "model", model, vocab, popularity, meta={})


def test_evaluate_prints_model_and_baselines_as_json(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    lines = [f"u{u} i{rng.integers(1, 13)}" for u in range(30) for _ in range(5)]
    lines.append("u0 unknown-item")
    lines.append("broken")
    data = tmp_path / "log.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code = main(["evaluate", "--model", str(model_dir), "--data", str(data), "--format",
                 "sasrec", "--json", "--device", "cpu", "--num-negatives", "5"])

    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["users_evaluated"] == 30
    assert doc["data"]["bad_lines"] == 1
    assert doc["data"]["unknown_items"] == 1
    names = list(doc["results"])
    assert names[1:] == ["most-popular", "transition", "co-occurrence"]
    for result in doc["results"].values():
        assert set(result) == {"full", "sampled"}
        assert 0.0 <= result["full"]["NDCG@10"] <= 1.0


def test_evaluate_table_and_strict_failure(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "log.txt"
    data.write_text("".join(f"u{u} i{k}\n" for u in range(3) for k in range(1, 6)), "utf-8")
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--format",
                 "sasrec", "--device", "cpu", "--no-baselines"]) == 0
    out = capsys.readouterr().out
    for label in ("full ranking", "sampled-100", "NDCG@10", "users evaluated: 3"):
        assert label in out

    data.write_text("u1 i1\nnot a valid line at all\n", "utf-8")
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--format",
                 "sasrec", "--strict"]) == 2
    assert ":2:" in capsys.readouterr().err
