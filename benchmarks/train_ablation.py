"""`streamrec bench ablation`: the games training recipe, one knob at a time, over seeds.

Each variant of `VARIANTS` is the `games` preset with a few ModelConfig / TrainConfig
fields changed; every (variant, seed) trains on the games log and is scored on the
validation split only (the test split is never read here). A run is one JSON line in
.cache/bench/train-ablation.jsonl, so an interrupted ablation resumes where it stopped;
runs go seed by seed (all variants on the first seed, then the next), so a partial file
is still a table. The summary (mean, spread, min-max per variant) goes to
docs/bench/train-ablation.json and from there to the "Training recipe ablation"
section of docs/QUALITY.md (`train_ablation_report.py`). Torch is imported inside the
runs only: the CLI's help must not load it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamrec.bench import report
from streamrec.bench.train_ablation_report import BASELINE, SHIFTED_BASELINE, render, save
from streamrec.common.errors import ConfigError
from streamrec.encoder.config import ModelConfig, TrainConfig, preset

logger = logging.getLogger(__name__)

RESULTS = report.ROOT / ".cache" / "bench" / "train-ablation.jsonl"
DATA = report.ROOT.parent / "shared" / "data" / "games.txt"
SEEDS = (42, 1, 2)
FIXED_EVAL_SEED = 42  # sampled-100 negatives of the all-users validation pass
# The recipe the ablation measured around: the games preset as it was then (8 epochs,
# the validation item held out). The preset has since taken the winners; the baseline
# and every variant stay on this base, so the recorded runs keep their meaning.
ABLATION_BASE: dict[str, Any] = {"epochs": 8, "fit_validation": False}


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: the games preset with `overrides` (field -> value)."""

    name: str  # as given to --variants
    change: str  # what it changes, for the table
    overrides: dict[str, Any]
    # Each user's last item (the test item) removed before training: the run is scored
    # on every user's second-to-last item, after training on the items before it (with
    # `fit_validation`, on all of them): what training on the validation item adds,
    # measured without reading the test split. Compared with SHIFTED_BASELINE.
    shifted: bool = False


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant(BASELINE, "the games preset", {}),
    Variant("epochs-16", "16 epochs (rate decays to 0 over 16)", {"epochs": 16}),
    Variant("epochs-24", "24 epochs", {"epochs": 24}),
    Variant("negatives-4096", "4,096 sampled negatives", {"num_negatives": 4096}),
    Variant("negatives-8192", "8,192 sampled negatives", {"num_negatives": 8192}),
    Variant("hidden-128", "d 128 (serving: 2x the item table and encoder width)",
            {"hidden": 128}),
    Variant("dropout-0.2", "dropout 0.2 (blocks and embeddings)",
            {"dropout": 0.2, "emb_dropout": 0.2}),
    Variant("dropout-0.4", "dropout 0.4 (blocks and embeddings)",
            {"dropout": 0.4, "emb_dropout": 0.4}),
    Variant("lr-2e-3", "peak learning rate 2e-3", {"lr": 2e-3}),
    Variant("batch-128", "batch 128 users", {"batch_size": 128}),
    Variant("blocks-3", "3 blocks (serving: 1.5x the encoder)", {"blocks": 3}),
    Variant("ema-off", "no weight averaging (EMA off)", {"ema_decay": 0.0}),
    # the single-knob winners combined (each alone beat the spread above)
    Variant("combo-16", "16 epochs, 4,096 negatives, lr 2e-3",
            {"epochs": 16, "num_negatives": 4096, "lr": 2e-3}),
    Variant("combo-16-d0.2", "combo-16 with dropout 0.2",
            {"epochs": 16, "num_negatives": 4096, "lr": 2e-3, "dropout": 0.2,
             "emb_dropout": 0.2}),
    Variant("combo-24", "24 epochs, 4,096 negatives (lr 1e-3)",
            {"epochs": 24, "num_negatives": 4096}),
    Variant("combo-16-h128", "combo-16 at d 128 (serving: 2x the width)",
            {"epochs": 16, "num_negatives": 4096, "lr": 2e-3, "hidden": 128}),
    Variant(SHIFTED_BASELINE, "the games preset, test items removed (see below)", {},
            shifted=True),
    Variant("shifted-fit-validation", "and trains on the item before the scored one "
            "(fit_validation)", {"fit_validation": True}, shifted=True),
)}


@dataclass(frozen=True)
class AblationOptions:
    """What `bench ablation` runs and where it keeps the runs."""

    variants: tuple[str, ...] = tuple(VARIANTS)
    seeds: tuple[int, ...] = SEEDS
    parallel: int = 2  # runs at a time, each in its own process (the preset uses 1 thread)
    report_only: bool = False  # summarise the runs already in `results`, train nothing
    data: Path = DATA
    results: Path = RESULTS


def configs_for(variant: Variant, num_items: int, seed: int) -> tuple[ModelConfig, TrainConfig]:
    """The games preset on ABLATION_BASE for `num_items` with the variant's overrides and
    `seed`."""
    model_config, train_config = preset("games", num_items, 0, 0)
    train_config = dataclasses.replace(train_config, **ABLATION_BASE)
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(variant.overrides) - model_fields - train_fields)
    if unknown:
        raise ConfigError(f"variant {variant.name!r} sets unknown fields {unknown}")
    model_config = dataclasses.replace(
        model_config, **{k: v for k, v in variant.overrides.items() if k in model_fields})
    train_config = dataclasses.replace(
        train_config, **{k: v for k, v in variant.overrides.items() if k in train_fields},
        seed=seed)
    return model_config, train_config


def planned(variants: Sequence[Variant], seeds: Sequence[int]) -> list[tuple[Variant, int]]:
    """Every (variant, seed), seed-major: all variants on the first seed come first."""
    return [(v, seed) for seed in seeds for v in variants]


def load_runs(path: Path) -> list[dict[str, Any]]:
    """The runs recorded in `path` (none when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def without_last_items(interactions: Any) -> Any:
    """`interactions` with every user's last item removed: the shifted protocol's data."""
    return dataclasses.replace(interactions, sequences=[s[:-1] for s in interactions.sequences])


def _key(variant: Variant, seed: int) -> str:
    return json.dumps([variant.name, seed, variant.overrides], sort_keys=True)


def pending(runs: list[tuple[Variant, int]], done: list[dict[str, Any]]
            ) -> list[tuple[Variant, int]]:
    """The runs without a recorded result (same name, seed and overrides)."""
    have = {json.dumps([r["variant"], r["seed"], r["overrides"]], sort_keys=True)
            for r in done}
    return [(v, seed) for v, seed in runs if _key(v, seed) not in have]


_DATA_CACHE: dict[str, Any] = {}  # per process: the log is read once per worker


def train_run(data: str, variant: Variant, seed: int) -> dict[str, Any]:
    """Train one (variant, seed) on the log at `data`; its JSON-ready result row.

    Besides the best validation NDCG@10 of training (on the preset's 8,000 users, drawn
    by the seed), the kept model is scored once on every validation user: full ranking
    and sampled-100 (negatives fixed by FIXED_EVAL_SEED), the same cases for every run.
    """
    import torch

    from streamrec.encoder.data import load_interactions
    from streamrec.encoder.evaluate import ModelScorer, evaluate_protocols
    from streamrec.encoder.split import leave_one_out
    from streamrec.encoder.train import train_model

    torch.set_num_threads(1)  # two runs share two cores; the preset trains on 1 thread too
    if data not in _DATA_CACHE:
        _DATA_CACHE[data] = load_interactions(data, "sasrec")
    interactions = _DATA_CACHE[data]
    if variant.shifted:
        interactions = without_last_items(interactions)
    model_config, train_config = configs_for(variant, interactions.num_items, seed)
    result = train_model(interactions, model_config, train_config, progress=False)
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), {})
    split = leave_one_out(interactions)
    cases = split.test if variant.shifted else split.validation  # the real validation item
    scorer = ModelScorer(result.model, device=torch.device("cpu"), batch_size=1024)
    metrics = evaluate_protocols(scorer, cases, ks=(10,), batch_size=2048,
                                 max_len=model_config.max_len, seed=FIXED_EVAL_SEED)
    val_ndcg10, val_hr10 = result.best_val_ndcg10, best.get("val_hr10")
    if variant.shifted:  # scored on the same item by every shifted run: all users
        val_ndcg10, val_hr10 = metrics["full"].ndcg[10], metrics["full"].hr[10]
    return {
        "variant": variant.name, "seed": seed, "overrides": variant.overrides,
        "shifted": variant.shifted, "val_ndcg10": val_ndcg10, "val_hr10": val_hr10,
        "best_epoch": result.best_epoch, "epochs": len(result.history),
        "stopped": result.stopped, "minutes": round(result.wall_seconds / 60, 2),
        "all_users": len(cases),
        "all_ndcg10": metrics["full"].ndcg[10], "all_hr10": metrics["full"].hr[10],
        "s100_ndcg10": metrics["sampled"].ndcg[10], "s100_hr10": metrics["sampled"].hr[10],
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


Trainer = Callable[[str, Variant, int], dict[str, Any]]


def run(options: AblationOptions, trainer: Trainer = train_run,
        variants: dict[str, Variant] | None = None) -> dict[str, Any]:
    """Train the runs not yet in `options.results`, then summarise and report all of them."""
    registry = variants or VARIANTS
    unknown = [name for name in options.variants if name not in registry]
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; choose from {', '.join(registry)}")
    chosen = [registry[name] for name in options.variants]
    todo = [] if options.report_only else pending(planned(chosen, options.seeds),
                                                  load_runs(options.results))
    if todo and not options.data.is_file():
        raise ConfigError(f"{options.data} not found: the ablation trains on the games log")
    if todo:
        print(f"[ablation] {len(todo)} runs to go, {options.parallel} at a time", flush=True)
        _train_all(options, todo, trainer)
    doc = summarise(load_runs(options.results), chosen, options.seeds, options.parallel)
    path = save(doc)
    print(render(doc), flush=True)
    print(f"[ablation] wrote {path}", flush=True)
    return doc


def _train_all(options: AblationOptions, todo: list[tuple[Variant, int]],
               trainer: Trainer) -> None:
    """Run `todo` `options.parallel` at a time (spawned processes), appending each result."""
    options.results.parent.mkdir(parents=True, exist_ok=True)
    started, finished = time.perf_counter(), 0

    def record(row: dict[str, Any]) -> None:
        nonlocal finished
        with options.results.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        finished += 1
        elapsed = time.perf_counter() - started
        eta = elapsed / finished * (len(todo) - finished)
        print(f"[ablation] {finished}/{len(todo)} {row['variant']} seed {row['seed']}: "
              f"val NDCG@10 {row['val_ndcg10']:.4f}, {row['epochs']} epochs, "
              f"{row['minutes']:.1f} min; elapsed {elapsed / 60:.0f} min, "
              f"ETA {eta / 60:.0f} min", flush=True)

    data = str(options.data)
    if options.parallel <= 1:
        for variant, seed in todo:
            record(trainer(data, variant, seed))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(options.parallel, mp_context=context) as pool:
        futures: list[Future[dict[str, Any]]] = [
            pool.submit(trainer, data, variant, seed) for variant, seed in todo]
        for future in as_completed(futures):
            record(future.result())


def _stats(values: list[float]) -> dict[str, float]:
    """mean, sample std (0 for one value), min, max."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]], variants: Sequence[Variant], seeds: Sequence[int],
              parallel: int) -> dict[str, Any]:
    """The report's JSON: per variant the per-seed values, mean, std and min-max, and the
    difference to the baseline, beside the larger of the two spreads."""
    latest = {(r["variant"], r["seed"]): r for r in runs
              if r["variant"] in {v.name for v in variants} and r["seed"] in seeds}
    rows: list[dict[str, Any]] = []
    for variant in variants:
        mine = [latest[variant.name, s] for s in seeds if (variant.name, s) in latest]
        if not mine:
            continue
        row: dict[str, Any] = {
            "variant": variant.name, "change": variant.change, "overrides": variant.overrides,
            "shifted": variant.shifted, "seeds": [r["seed"] for r in mine],
            "per_seed": {str(r["seed"]): r["val_ndcg10"] for r in mine},
            "val_ndcg10": _stats([r["val_ndcg10"] for r in mine]),
            "minutes": _stats([r["minutes"] for r in mine]),
            "epochs": _stats([r["epochs"] for r in mine]),
            "best_epoch": [r["best_epoch"] for r in mine],
            "stopped": sorted({r["stopped"] for r in mine}),
        }
        for name in ("val_hr10", "all_ndcg10", "all_hr10", "s100_ndcg10", "s100_hr10"):
            values = [r[name] for r in mine if r.get(name) is not None]
            if values:
                row[name] = _stats(values)
        rows.append(row)
    bases = {False: next((r for r in rows if r["variant"] == BASELINE), None),
             True: next((r for r in rows if r["variant"] == SHIFTED_BASELINE), None)}
    for row in rows:
        base = bases[row["shifted"]]
        if base is None:
            continue
        delta = row["val_ndcg10"]["mean"] - base["val_ndcg10"]["mean"]
        spread = max(row["val_ndcg10"]["std"], base["val_ndcg10"]["std"])
        paired = [row["per_seed"][s] - base["per_seed"][s] for s in row["per_seed"]
                  if s in base["per_seed"]]
        seeded = min(len(row["seeds"]), len(base["seeds"])) >= 2  # else no spread to beat
        row |= {"delta": delta, "spread": spread,
                "beyond_spread": abs(delta) > spread if seeded else None,
                "paired_deltas": paired}
    finished = sorted(r["finished"] for r in latest.values())
    return {"date": f"{finished[0]} to {finished[-1]}" if finished else "",
            "machine": report.machine() if rows else "", "parallel": parallel,
            "seeds": list(seeds), "runs": len(latest), "rows": rows}
