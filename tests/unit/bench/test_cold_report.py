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


def test_repeated_trainings_the_trade_off_and_the_ablation_are_reported() -> None:
    measured = doc(0.004, tower_warm=0.099)
    runs = [{"seed": s, "epochs": e, "best_epoch": e - 5, "seconds": t, "stopped": "patience",
             "cold NDCG@10": 0.004, "warm NDCG@10": w}
            for s, e, t, w in ((42, 20, 80.0, 0.097), (43, 25, 95.0, 0.101))]
    tower = measured["rows"]["model+content"]
    tower["runs"] = runs
    tower["warm"]["NDCG@10 spread"] = 0.0028
    tower["frontier"] = [{"shift": 0.0, "cold NDCG@10": 0.004, "warm NDCG@10": 0.099},
                         {"shift": 2.0, "cold NDCG@10": 0.05, "warm NDCG@10": 0.07}]
    ablation = {"date": "then", "machine": "a box", "split_seed": 7, "seeds": [7, 8],
                "without_features": {"warm NDCG@10": [0.11, 0.01], "seconds": 90.0},
                "rows": [{"name": "min_items 2", "cold HR@10": [0.01, 0.001],
                          "cold NDCG@10": [0.005, 0.0005], "among cold NDCG@10": [0.09, 0.01],
                          "warm NDCG@10": [0.105, 0.002], "seconds": 80.0}]}
    text = render(measured, ablation)
    assert ("mean of 2 trainings (seeds 42-43: warm NDCG@10 0.0970 / 0.1010, spread ±0.0028); "
            "20-25 epochs, 80-95 s each") in text
    assert "| +2.0 | 0.0500 | 0.0700 |" in text
    assert "shift that reaches the cold target (>= 0.0480), +2.0, leaves warm-target " \
           "NDCG@10 at 0.0700, -30%" in " ".join(text.split())
    assert "| min_items 2 | 0.0100 ± 0.0010 | 0.0050 ± 0.0005 | 0.0900 ± 0.0100 | " \
           "0.1050 ± 0.0020 | 80 |" in text
    assert "--ablation --seed 7 --repeats 2" in " ".join(text.split())
    assert "--ablation" not in render(measured)  # not run: no table


def test_the_ablation_beside_the_json_goes_into_the_section(tmp_path: Path) -> None:
    path = tmp_path / "cold-items.json"
    path.write_text(json.dumps(doc(0.05)), encoding="utf-8")
    text = "# Q\n\n## How the configuration was chosen\ny\n"
    assert "tower setting" not in with_cold_section(text, path)
    (tmp_path / "cold-ablation.json").write_text(json.dumps(
        {"date": "then", "machine": "a box", "split_seed": 7, "seeds": [7],
         "without_features": {"warm NDCG@10": [0.11, 0.0], "seconds": 90.0}, "rows": []}),
        encoding="utf-8")
    assert "| tower setting |" in with_cold_section(text, path)


def test_the_calibrated_mixture_and_the_data_note_are_reported() -> None:
    measured = doc(0.004, tower_warm=0.099)
    measured["data"]["note"] = "Rebuilt from another copy."
    shifts = [{"shift": 0.0, "cold NDCG@10": 0.004, "warm NDCG@10": 0.099}]
    mixture = [{"prior": p, "temperature": 0.3, "cold NDCG@10": c, "warm NDCG@10": w}
               for p, c, w in ((0.05, 0.010, 0.0995), (0.1, 0.030, 0.095),
                               (0.25, 0.060, 0.080), (0.5, 0.070, 0.070))]
    measured["rows"]["model+content"]["frontier"] = {"shift": shifts, "mixture": mixture}
    text = " ".join(render(measured).split())
    assert "items with features). Rebuilt from another copy." in text
    assert "| 0.25 | 0.3 | 0.0600 | 0.0800 |" in text
    # the target is 1.2 x (d)'s 0.04: 0.048; of the two that reach it, the better warm one
    assert ("the best that reaches the cold target (prior 0.25, temperature 0.3) leaves "
            "warm-target NDCG@10 at 0.0800, -20% (the shifts' best: none); within 1% on "
            "warm targets the cold targets reach at most 0.0100 (the shifts: 0.0040)") in text
    # a frontier written before the mixture (a list of shifts) still renders
    measured["rows"]["model+content"]["frontier"] = shifts
    assert "| +0.0 | 0.0040 | 0.0990 |" in render(measured)
    assert "prior share" not in render(measured)
