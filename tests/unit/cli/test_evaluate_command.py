"""`streamrec evaluate` end to end on a tiny untrained checkpoint and a tiny log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Plain imports: these are streamrec's own modules, so an import error must fail the
# tests, not skip them.
from streamrec.cli.main import main
from streamrec.encoder.checkpoint import save_checkpoint
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    vocab = ItemVocab([f"i{n}" for n in range(1, 13)])
    config = ModelConfig(num_items=len(vocab), max_len=6, hidden=8, blocks=1)
    model = SASRec(config)
    popularity = np.ones(len(vocab) + 1, dtype=np.float32)
    popularity[0] = 0
    return save_checkpoint(tmp_path / "model", model, vocab, popularity, meta={})


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


def test_evaluate_counts_only_the_allowed_event_types(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Users 0..9 bought 4 items each; users 10..19 only viewed (4 views each).
    rows = [{"user_id": f"u{u}", "item_id": f"i{k}", "ts": k,
             "type": "purchase" if u < 10 else "view"} for u in range(20) for k in range(1, 5)]
    data = tmp_path / "log.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")

    code = main(["evaluate", "--model", str(model_dir), "--data", str(data), "--format",
                 "jsonl", "--event-types", "purchase", "--json", "--device", "cpu",
                 "--num-negatives", "5", "--no-baselines"])

    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["users_evaluated"] == 10
    assert doc["data"]["interactions"] == 40
    assert doc["data"]["skipped"] == 40
    assert doc["data"]["skipped_types"] == {"view": 40}
