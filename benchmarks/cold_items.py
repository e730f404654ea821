"""`streamrec bench cold`: item cold start on MovieLens, the protocol of issue 23 part 3.

15% of the items (seed 42) are held out of training entirely (`encoder/cold.py`).
On test cases whose target is such a cold item, full ranking over trained + cold
items, it compares the model with a content tower against four baselines
(`encoder/cold_baselines.py`): (a) random among the cold items, (b) the most popular
items in the user's recent categories, (c) nearest items by content to the user's
recent items, (d) the same among the cold items only. On warm targets (the usual
leave-one-out test) it compares the model with features against the same model
trained without. The data is a folder written by `streamrec data movielens`
(ml-1m or ml-100k; the fetch is a manual step, docs/QUALITY.md, "Item cold start").

The figures go to docs/bench/cold-items.json and, from there, the "Item cold
start" section of docs/QUALITY.md (`cold_report.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.bench import cold_report
from streamrec.bench.report import ROOT, machine
from streamrec.encoder.cold import ColdModelScorer, ColdSplit, Restricted, cold_item_split
from streamrec.encoder.cold_baselines import (
    CategoryPopular,
    ContentNeighbours,
    RandomCold,
    TfidfConfig,
    tfidf_content,
)
from streamrec.encoder.config import preset
from streamrec.encoder.data import load_interactions
from streamrec.encoder.evaluate import ModelScorer, Scorer, evaluate
from streamrec.encoder.features import ItemFeatures, read_item_features
from streamrec.encoder.movielens import ITEMS_FILE, ratings_path

logger = logging.getLogger(__name__)

KS = (10,)
EVAL_MAX_LEN = 1000  # history columns handed to a scorer; models cut to their own L
BASELINES = {"a": "(a) random among cold items", "b": "(b) popular in recent categories",
             "c": "(c) content neighbours, all items", "d": "(d) content neighbours, cold items"}


@dataclass(frozen=True)
class ColdOptions:
    """What `bench cold` runs."""

    data: Path = ROOT / ".cache" / "movielens"  # `streamrec data movielens --out`
    fraction: float = 0.15  # of the items held out
    seed: int = 42
    targets_per_user: int = 0  # cold cases per user, the last ones (0: all)
    minutes: float = 10.0  # training budget per model
    models: bool = True  # False: the baselines only
    report: bool = True  # write the JSON and the QUALITY.md section


def run(options: ColdOptions) -> dict[str, Any]:
    """Split, fit and evaluate the baselines, train and evaluate the models, report."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load_interactions(ratings_path(options.data), "movielens")
    features = read_item_features(options.data / ITEMS_FILE)
    split = cold_item_split(data, options.fraction, seed=options.seed,
                            targets_per_user=options.targets_per_user)
    rows: dict[str, dict[str, Any]] = {}
    gains: dict[str, dict[str, np.ndarray]] = {}  # row -> kind -> each case's NDCG@10
    for key, scorer in baselines(split, features, options.seed).items():
        gains[key] = {}
        rows[key] = _evaluate(BASELINES[key], scorer, split, gains=gains[key])
        _show(rows[key])
    if options.models:
        rows |= _models(split, features, options, gains)
        _paired(rows, gains)
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "data": {"source": str(options.data.relative_to(ROOT)
                               if options.data.is_relative_to(ROOT) else options.data),
                 "ratings": ratings_path(options.data).name, "users": data.num_users,
                 "items": data.num_items, "interactions": data.num_interactions,
                 "with_features": sum(i in features for i in split.catalogue)},
        "split": {"fraction": options.fraction, "seed": options.seed,
                  "targets_per_user": options.targets_per_user, "cold_items": split.num_cold,
                  "trained_items": split.num_warm,
                  "train_interactions": split.train.num_interactions,
                  "cold_cases": len(split.cold_cases), "warm_cases": len(split.warm_cases),
                  "cold_users_skipped": split.cold_users_skipped},
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if options.report:
        print(f"[bench] wrote {cold_report.save(doc)} and its QUALITY.md section", flush=True)
    return doc


def baselines(split: ColdSplit, features: Mapping[str, ItemFeatures],
              seed: int) -> dict[str, Scorer]:
    """(a)-(d) over the split's catalogue, from the items' categories and text."""
    known = [features.get(item) for item in split.catalogue]
    content = tfidf_content([f.categories if f else () for f in known],
                            [f.text if f else None for f in known], TfidfConfig())
    return {
        "a": RandomCold(split.num_warm, split.num_cold, seed=seed),
        "b": CategoryPopular(content, split.train_counts(), seed=seed),
        "c": ContentNeighbours(content),
        "d": Restricted(ContentNeighbours(content), split.cold_mask()),
    }


def _models(split: ColdSplit, features: Mapping[str, ItemFeatures], options: ColdOptions,
            gains: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """The model without features, then with; each case's NDCG@10 into `gains`."""
    from streamrec.encoder.train import train_model

    model_config, train_config = preset("auto", split.num_warm, split.train.num_users,
                                        split.train.num_interactions)
    train_config = dataclasses.replace(train_config, max_minutes=options.minutes, threads=1,
                                       seed=options.seed)
    trained = {item: features[item] for item in split.catalogue[: split.num_warm]
               if item in features}  # the model never sees a cold item's features either
    rows: dict[str, dict[str, Any]] = {}
    for key, item_features in (("model", None), ("model+content", trained)):
        logger.info("bench cold: training %s (%s)", key, model_config)
        result = train_model(split.train, model_config, train_config, progress=False,
                             **({"item_features": item_features} if item_features else {}))
        model = result.model.cpu().eval()
        training = {"epochs": len(result.history), "best_epoch": result.best_epoch,
                    "seconds": round(result.wall_seconds, 1), "stopped": result.stopped,
                    "model": model_config.to_dict()}
        name = "SASRec, no features" if item_features is None else "SASRec + content tower"
        gains[key] = {}
        rows[key] = _evaluate(name, _model_scorer(model, split, features), split,
                              gains=gains[key]) | training
        _show(rows[key])
        if item_features is not None:
            # Diagnostics: the cold items ranked among themselves (what (d) does), which
            # separates the tower's ordering of them from its calibration against the
            # trained items; and warm targets with the cold items left out of the catalogue.
            among_cold = Restricted(_model_scorer(model, split, features), split.cold_mask())
            rows[f"{key}, cold only"] = _evaluate(f"{name}, cold items only", among_cold,
                                                  split, ("cold",))
            _show(rows[f"{key}, cold only"])
            warm_only = _evaluate(name, _model_scorer(model, split, None), split, ("warm",))
            rows[key]["warm_without_cold_items"] = warm_only["warm"]
    return rows


def _paired(rows: dict[str, dict[str, Any]], gains: dict[str, dict[str, np.ndarray]]) -> None:
    """Standard errors of the two differences the targets are about, case by case on the
    same cases (far smaller than either figure's own): the tower's cold NDCG@10 minus the
    strongest baseline's, and its warm NDCG@10 minus the model's without features."""
    best = max("abcd", key=lambda k: rows[k]["cold"]["NDCG@10"])
    tower = gains["model+content"]
    rows["model+content"]["paired_se"] = {
        "cold_vs_best_baseline": _se(tower["cold"] - gains[best]["cold"]),
        "warm_vs_model": _se(tower["warm"] - gains["model"]["warm"]),
    }


def _model_scorer(model: torch.nn.Module, split: ColdSplit,
                  features: Mapping[str, ItemFeatures] | None) -> ColdModelScorer:
    """The model over the catalogue: cold items by their content vectors when it has a
    tower and `features` are given, else -inf (it has no row for them)."""
    base = ModelScorer(model, batch_size=256)
    with torch.inference_mode():
        table = model.item_embeddings().float().numpy()  # [V + 1, d]
        cold_table = None
        if features is not None and getattr(model, "content", None) is not None:
            from streamrec.encoder.content import item_content

            cold_ids = split.catalogue[split.num_warm :]
            inputs = item_content(cold_ids, features, model.content_config)
            cold_table = model.content_vectors(inputs).float().numpy()  # [C, d]
    return ColdModelScorer(base.queries, table, cold_table, split.num_cold)


def _evaluate(name: str, scorer: Scorer, split: ColdSplit,
              kinds: tuple[str, ...] = ("cold", "warm"),
              gains: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Full-ranking HR@10 / NDCG@10 (with its standard error over the cases) on the cold
    and/or the warm cases; each case's NDCG@10 goes into `gains` by kind when given."""
    out: dict[str, Any] = {"name": name}
    for kind in kinds:
        cases = split.cold_cases if kind == "cold" else split.warm_cases
        metrics = evaluate(scorer, cases, num_items=split.num_items, ks=KS,
                           max_len=EVAL_MAX_LEN, name=f"{name}, {kind}")
        per_case = _ndcg10(metrics.ranks)
        out[kind] = {"HR@10": metrics.hr[10], "NDCG@10": metrics.ndcg[10],
                     "NDCG@10 se": _se(per_case), "users": metrics.users}
        if gains is not None:
            gains[kind] = per_case
    return out


def _ndcg10(ranks: np.ndarray) -> np.ndarray:
    """Each case's NDCG@10 from its 0-based rank (one relevant item)."""
    return np.where(ranks < 10, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)


def _se(values: np.ndarray) -> float:
    """Standard error of the mean of `values` (0 for fewer than 2)."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _show(row: dict[str, Any]) -> None:
    parts = [f"{kind} NDCG@10 {row[kind]['NDCG@10']:.4f} HR@10 {row[kind]['HR@10']:.4f}"
             for kind in ("cold", "warm") if kind in row]
    print(f"[bench] {row['name']}: {'; '.join(parts)}", flush=True)
