"""`bench cold`'s QUALITY.md section: the verdicts follow the figures; the section is
replaced, never duplicated, and survives a regeneration of the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamrec.bench.cold_report import render, with_cold_section


def doc(tower_cold: float | None, tower_warm: float = 0.10) -> dict[str, Any]:
    def row(name: str, cold: float, warm: float) -> dict[str, Any]:
        return {"name": name, "cold": {"HR@10": 2 * cold, "NDCG@10": cold, "users": 9},
                "warm": {"HR@10": 2 * warm, "NDCG@10": warm, "users": 9}}

    rows = {"a": row("(a) random", 0.02, 0.0), "b": row("(b) popular", 0.0, 0.05),
            "c": row("(c) content", 0.01, 0.01), "d": row("(d) content, cold", 0.04, 0.0)}
    if tower_cold is not None:
        rows["model"] = row("plain", 0.0, 0.10) | {
            "epochs": 3, "seconds": 12.0, "best_epoch": 2, "stopped": "patience",
            "model": {"blocks": 2, "heads": 2, "hidden": 64, "max_len": 200}}
        rows["model+content"] = row("tower", tower_cold, tower_warm)
    return {"date": "today", "machine": "a box",
            "data": {"source": ".cache/movielens", "ratings": "u.data", "users": 9,
                     "items": 20, "interactions": 99, "with_features": 20},
            "split": {"fraction": 0.15, "seed": 42, "targets_per_user": 0, "cold_items": 3,
                      "trained_items": 17, "train_interactions": 80, "cold_cases": 9,
                      "warm_cases": 9, "cold_users_skipped": 0},
            "rows": rows}


def test_verdicts_follow_the_figures() -> None:
    assert "- met: cold-target NDCG@10 0.0490 vs the strongest baseline, (d) content, " \
           "cold, 0.0400 (+23%" in render(doc(0.049))
    missed = render(doc(0.047, tower_warm=0.0989))
    assert "**not met**: cold-target" in missed
    assert "**not met**: warm-target NDCG@10 0.0989 vs 0.1000" in missed
    assert "- met: warm-target" in render(doc(0.05, tower_warm=0.0991))
    assert "not measured yet" in render(doc(None))
    assert "| plain | 0.0000 | 0.0000 | 0.2000 | 0.1000 | 3 epochs, 12 s" in render(doc(0.05))
    assert "grouplens.org/datasets/movielens" in render(doc(None))  # source and licence


def test_the_section_replaces_the_old_one_before_the_tuning_log(tmp_path: Path) -> None:
    path = tmp_path / "cold.json"
    text = "# Q\n\n## Results\nx\n\n## How the configuration was chosen\ny\n"
    assert with_cold_section(text, path) == text  # nothing measured: unchanged
    path.write_text(json.dumps(doc(0.05)), encoding="utf-8")
    once = with_cold_section(text, path)
    assert once.index("## Results") < once.index("## Item cold start") < once.index(
        "## How the configuration was chosen")
    path.write_text(json.dumps(doc(0.01)), encoding="utf-8")
    twice = with_cold_section(once, path)
    assert twice.count("## Item cold start") == 1
    assert "0.0100" in twice
    assert twice.endswith("y\n")
