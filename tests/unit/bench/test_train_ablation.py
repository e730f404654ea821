"""`bench ablation`: variants are the games preset with their change and nothing else, a
rerun trains only what is missing, and the report's figures and section are right."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.bench import report, train_ablation
from streamrec.bench.train_ablation import (
    ABLATION_BASE,
    VARIANTS,
    AblationOptions,
    Variant,
    configs_for,
    planned,
    summarise,
)
from streamrec.bench.train_ablation_report import HEADING, render, with_ablation_section
from streamrec.common.errors import ConfigError
from streamrec.encoder.config import preset


def test_a_variant_is_the_games_preset_with_its_change_and_the_seed() -> None:
    model, train = preset("games", 500, 0, 0)
    train = dataclasses.replace(train, **ABLATION_BASE)  # the recipe the ablation measured
    assert train.epochs == 8
    assert not train.fit_validation
    base_model, base_train = configs_for(VARIANTS["baseline"], 500, seed=1)
    assert base_model == model
    assert base_train.to_dict() == train.to_dict() | {"seed": 1}
    drop_model, drop_train = configs_for(VARIANTS["dropout-0.2"], 500, seed=42)
    assert (drop_model.dropout, drop_model.emb_dropout) == (0.2, 0.2)
    assert drop_model.to_dict() | {"dropout": 0.3, "emb_dropout": 0.3} == model.to_dict()
    assert drop_train == train
    long_model, long_train = configs_for(VARIANTS["epochs-16"], 500, seed=42)
    assert long_model == model
    assert long_train.to_dict() == train.to_dict() | {"epochs": 16}
    assert configs_for(VARIANTS["ema-off"], 500, 42)[1].ema_decay == 0.0
    with pytest.raises(ConfigError, match="unknown fields"):
        configs_for(Variant("bad", "typo", {"epoch": 3}), 500, 42)


def test_runs_go_seed_by_seed() -> None:
    a, b = VARIANTS["baseline"], VARIANTS["blocks-3"]
    assert planned([a, b], (42, 1)) == [(a, 42), (b, 42), (a, 1), (b, 1)]


def fake_row(data: str, variant: Variant, seed: int) -> dict[str, Any]:
    ndcg = {"baseline": 0.0650 + seed / 1e4, "better": 0.0700 + seed / 1e4,
            "same": (0.0640, 0.0660, 0.0662)[seed - 1]}[variant.name]
    return {"variant": variant.name, "seed": seed, "overrides": variant.overrides,
            "val_ndcg10": ndcg, "val_hr10": 2 * ndcg, "best_epoch": 8, "epochs": 8,
            "stopped": "epochs", "minutes": 3.0 + seed, "all_ndcg10": ndcg,
            "s100_ndcg10": 0.56, "finished": f"2026-01-0{seed} 10:00 UTC"}


@pytest.fixture
def registry() -> dict[str, Variant]:
    return {"baseline": Variant("baseline", "the games preset", {}),
            "better": Variant("better", "more of it", {"epochs": 16}),
            "same": Variant("same", "no matter", {"lr": 2e-3})}


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(report, "DOCS", tmp_path / "docs")
    monkeypatch.setattr(report, "machine", lambda device="cpu": "a box")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "QUALITY.md").write_text(
        "# Q\n\n## Results\nr\n\n## How the configuration was chosen\nt\n")
    return tmp_path / "docs"


def test_a_rerun_trains_only_the_runs_not_yet_recorded(
        tmp_path: Path, docs: Path, registry: dict[str, Variant]) -> None:
    calls: list[tuple[str, int]] = []

    def trainer(data: str, variant: Variant, seed: int) -> dict[str, Any]:
        calls.append((variant.name, seed))
        return fake_row(data, variant, seed)

    data = tmp_path / "log.txt"
    data.write_text("1 1\n")
    options = AblationOptions(variants=("baseline", "better"), seeds=(1, 2), parallel=1,
                              data=data, results=tmp_path / "runs.jsonl")
    train_ablation.run(options, trainer, registry)
    assert calls == [("baseline", 1), ("better", 1), ("baseline", 2), ("better", 2)]
    calls.clear()
    doc = train_ablation.run(options, trainer, registry)
    assert calls == []
    assert doc["runs"] == 4
    changed = registry | {"better": Variant("better", "more of it", {"epochs": 24})}
    train_ablation.run(options, trainer, changed)  # a changed variant is a new run
    assert calls == [("better", 1), ("better", 2)]
    assert "## Training recipe ablation" in (docs / "QUALITY.md").read_text()
    assert json.loads((docs / "bench" / "train-ablation.json").read_text())["runs"] == 4


def test_the_report_gives_mean_spread_and_whether_a_gain_is_beyond_it(
        registry: dict[str, Variant], docs: Path) -> None:
    runs = [fake_row("", v, seed) for v in registry.values() for seed in (1, 2, 3)]
    doc = summarise(runs, list(registry.values()), (1, 2, 3), parallel=2)
    better = doc["rows"][1]
    assert better["val_ndcg10"]["mean"] == pytest.approx(0.0702)
    assert better["val_ndcg10"]["std"] == pytest.approx(np.std([0.0701, 0.0702, 0.0703],
                                                               ddof=1))
    assert better["beyond_spread"]
    assert not doc["rows"][2]["beyond_spread"]
    text = render(doc)
    assert "| better | more of it | 0.0702 ± 0.0001 (n=3) | 0.0701-0.0703 | +0.0050 | " \
           "**gain** (3/3 seeds up) |" in text
    assert "| same | no matter | 0.0654 ± 0.0012 (n=3) | 0.0640-0.0662 | +0.0002 | no " \
           "(2/3 seeds up) |" in text
    assert "| baseline | the games preset | 0.0652 ± 0.0001 (n=3) | 0.0651-0.0653 | " \
           "+0.0000 | - |" in text
    assert "2026-01-01 10:00 UTC to 2026-01-03 10:00 UTC; a box" in text
    assert "Beyond the spread, gains: better (+0.0050); losses: none." in text
    partial = summarise(runs[:1], list(registry.values()), (1, 2, 3), parallel=2)
    assert "0.0651 ± 0.0000 (n=1)" in render(partial)
    one_seed = summarise(runs[:4], list(registry.values()), (1, 2, 3), parallel=2)
    assert one_seed["rows"][1]["beyond_spread"] is None  # no spread to beat with one seed
    assert "+0.0049 | n/a (1 seed) (1/1 seeds up) |" in render(one_seed)


def test_the_section_replaces_its_older_self_before_the_tuning_runs(
        tmp_path: Path, registry: dict[str, Variant], docs: Path) -> None:
    text = "# Q\n\n## Results\nr\n\n## How the configuration was chosen\nt\n"
    path = tmp_path / "a.json"
    assert with_ablation_section(text, path) == text  # nothing measured: unchanged
    runs = [fake_row("", v, 1) for v in registry.values()]
    path.write_text(json.dumps(summarise(runs, list(registry.values()), (1,), 2)))
    once = with_ablation_section(text, path)
    assert once.index(HEADING) < once.index("## How the configuration was chosen")
    path.write_text(json.dumps(summarise(runs[:1], list(registry.values()), (1,), 2)))
    twice = with_ablation_section(once, path)
    assert twice.count(HEADING) == 1
    assert "| better |" in once
    assert "| better |" not in twice
    assert twice.startswith("# Q\n\n## Results\nr\n")


def test_real_runs_on_a_toy_log_in_two_processes_report_validation_figures(
        tmp_path: Path, docs: Path) -> None:
    rng = np.random.default_rng(0)
    lines = [f"{user} {item}" for user in range(1, 41)
             for item in rng.integers(1, 30, size=int(rng.integers(4, 9)))]
    data = tmp_path / "toy.txt"
    data.write_text("\n".join(lines) + "\n")
    tiny = {"baseline": Variant("baseline", "toy", {"hidden": 8, "epochs": 1,
                                                    "num_negatives": 8, "warmup_steps": 1})}
    options = AblationOptions(variants=("baseline",), seeds=(3, 4), parallel=2, data=data,
                              results=tmp_path / "runs.jsonl")
    train_ablation.run(options, variants=tiny)
    rows = sorted(train_ablation.load_runs(options.results), key=lambda r: r["seed"])
    assert [(r["seed"], r["epochs"], r["best_epoch"]) for r in rows] == [(3, 1, 1), (4, 1, 1)]
    for row in rows:
        assert 0.0 <= row["val_ndcg10"] <= row["val_hr10"] <= 1.0
        assert row["all_users"] == 40
        assert 0.0 <= row["s100_ndcg10"] <= 1.0


def test_shifted_rows_drop_the_test_items_and_compare_with_their_own_baseline() -> None:
    from streamrec.encoder.data import Interactions

    data = Interactions.from_pairs(["a"] * 4 + ["b"] * 3, [1, 2, 3, 4, 5, 6, 7])
    shifted = train_ablation.without_last_items(data)
    assert [s.tolist() for s in shifted.sequences] == [[1, 2, 3], [5, 6]]
    assert shifted.vocab == data.vocab  # the same rows: figures comparable across protocols
    rows = [{"variant": name, "seed": seed, "overrides": {}, "val_ndcg10": value,
             "best_epoch": 8, "epochs": 8, "stopped": "epochs", "minutes": 3.0,
             "finished": "2026-01-01 10:00 UTC"}
            for name, values in (("baseline", (0.070, 0.071)), ("shifted-baseline",
                                 (0.060, 0.061)), ("shifted-fit-validation", (0.066, 0.067)))
            for seed, value in zip((1, 2), values, strict=True)]
    chosen = [VARIANTS[n] for n in ("baseline", "shifted-baseline", "shifted-fit-validation")]
    doc = summarise(rows, chosen, (1, 2), parallel=2)
    fit = next(r for r in doc["rows"] if r["variant"] == "shifted-fit-validation")
    assert fit["delta"] == pytest.approx(0.006)  # against shifted-baseline, not baseline
    assert fit["beyond_spread"] is True
    assert configs_for(VARIANTS["shifted-fit-validation"], 500, 42)[1].fit_validation
