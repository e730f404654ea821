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
from typing import Any

import numpy as np
import torch

from streamrec.bench import cold_report
from streamrec.bench.cold_options import ColdOptions
from streamrec.bench.report import ROOT, machine
from streamrec.encoder.cold import (
    Calibrated,
    ColdModelScorer,
    ColdSplit,
    FreshSlots,
    Restricted,
    cold_item_split,
)
from streamrec.encoder.cold_baselines import (
    CategoryPopular,
    ContentNeighbours,
    RandomCold,
    TfidfConfig,
    tfidf_content,
)
from streamrec.encoder.config import ContentConfig, preset
from streamrec.encoder.content import item_content
from streamrec.encoder.data import Interactions, load_interactions
from streamrec.encoder.evaluate import ModelScorer, Scorer, evaluate
from streamrec.encoder.features import ItemFeatures, read_item_features
from streamrec.encoder.movielens import ITEMS_FILE, ratings_path

logger = logging.getLogger(__name__)

KS = (10,)
SHIFTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)  # `frontier`: added to the cold items' scores
# `frontier`: (prior share of cold items, temperature of their softmax) of `Calibrated`
MIXTURES = tuple((prior, t) for t in (0.3, 0.5) for prior in (0.05, 0.1, 0.15, 0.25))
MODEL_ROWS = {"model": "SASRec, no features", "model+content": "SASRec + content tower",
              "model+content, cold only": "SASRec + content tower, cold items only",
              "model+content, 1 fresh slot": "SASRec + content tower, 1 fresh slot"}
EVAL_MAX_LEN = 1000  # history columns handed to a scorer; models cut to their own L
BASELINES = {"a": "(a) random among cold items", "b": "(b) popular in recent categories",
             "c": "(c) content neighbours, all items", "d": "(d) content neighbours, cold items"}


def load_split(options: ColdOptions) -> tuple[Interactions, dict[str, ItemFeatures], ColdSplit]:
    """The converted MovieLens folder's ratings and item features, and its cold split."""
    data = load_interactions(ratings_path(options.data), "movielens")
    features = read_item_features(options.data / ITEMS_FILE)
    return data, features, cold_item_split(data, options.fraction, seed=options.seed,
                                           targets_per_user=options.targets_per_user)


def run(options: ColdOptions) -> dict[str, Any]:
    """Split, fit and evaluate the baselines, train and evaluate the models, report."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    data, features, split = load_split(options)
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
                 "with_features": sum(i in features for i in split.catalogue),
                 "note": options.data_note},
        "split": {"fraction": options.fraction, "seed": options.seed,
                  "targets_per_user": options.targets_per_user, "cold_items": split.num_cold,
                  "trained_items": split.num_warm,
                  "train_interactions": split.train.num_interactions,
                  "cold_cases": len(split.cold_cases), "warm_cases": len(split.warm_cases),
                  "cold_users_skipped": split.cold_users_skipped},
        "rows": rows,
        "repeats": options.repeats if options.models else 0,
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
    """`repeats` models without features and as many with, on seeds seed, seed + 1, ...;
    each row holds the mean over its runs (and the runs), `gains` each case's mean NDCG@10."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in MODEL_ROWS}
    case_gains: dict[str, dict[str, list[np.ndarray]]] = {}
    for seed in range(options.seed, options.seed + options.repeats):
        for key, row, per_case in model_runs(split, features, options.content, seed,
                                             options.minutes):
            runs[key].append(row)
            for kind, values in per_case.items():
                case_gains.setdefault(key, {}).setdefault(kind, []).append(values)
    rows: dict[str, dict[str, Any]] = {}
    for key, name in MODEL_ROWS.items():
        rows[key] = _mean_row(name, runs[key])
        for kind, values in case_gains.get(key, {}).items():
            mean = np.mean(values, axis=0)  # each case's NDCG@10, averaged over the runs
            rows[key][kind]["NDCG@10 se"] = _se(mean)
            gains.setdefault(key, {})[kind] = mean
        _show(rows[key])
    return rows


def model_runs(split: ColdSplit, features: Mapping[str, ItemFeatures], content: ContentConfig,
               seed: int, minutes: float, plain: bool = True,
               ) -> list[tuple[str, dict[str, Any], dict[str, np.ndarray]]]:
    """One model without features (unless not `plain`) and one with a `content` tower,
    trained with `seed` -> (row key, figures, each case's NDCG@10 by kind) for both and
    for the tower's ranking of the cold items among themselves."""
    from streamrec.encoder.train import train_model

    model_config, train_config = preset("auto", split.num_warm, split.train.num_users,
                                        split.train.num_interactions)
    train_config = dataclasses.replace(train_config, max_minutes=minutes, threads=1, seed=seed)
    trained = {item: features[item] for item in split.catalogue[: split.num_warm]
               if item in features}  # the model never sees a cold item's features either
    out = []
    for key, item_features in (("model", None), ("model+content", trained)):
        if key == "model" and not plain:
            continue
        logger.info("bench cold: training %s, seed %d (%s)", key, seed, model_config)
        tower = {"item_features": item_features, "content": content} if item_features else {}
        result = train_model(split.train, model_config, train_config, progress=False, **tower)
        model = result.model.cpu().eval()
        per_case: dict[str, np.ndarray] = {}
        row = _evaluate(MODEL_ROWS[key], _model_scorer(model, split, features), split,
                        gains=per_case) | {
            "seed": seed, "epochs": len(result.history), "best_epoch": result.best_epoch,
            "seconds": round(result.wall_seconds, 1), "stopped": result.stopped,
            "model": model_config.to_dict()}
        if item_features is not None:
            # Diagnostics: warm targets with the cold items left out of the catalogue; and
            # the cold items ranked among themselves (what (d) does), which separates the
            # tower's ordering of them from its calibration against the trained items.
            row["warm_without_cold_items"] = _evaluate(
                key, _model_scorer(model, split, None), split, ("warm",))["warm"]
            row["content"] = dataclasses.asdict(content)
            row["frontier"] = frontier(_model_scorer(model, split, features), split)
            among = Restricted(_model_scorer(model, split, features), split.cold_mask())
            out.append((f"{key}, cold only", _evaluate(
                MODEL_ROWS[f"{key}, cold only"], among, split, ("cold",)), {}))
            # The worker's --fresh-slots 1: the best cold item always takes a place.
            slotted = FreshSlots(_model_scorer(model, split, features), split.cold_mask(),
                                 k=10, slots=1)
            out.append((f"{key}, 1 fresh slot", _evaluate(
                MODEL_ROWS[f"{key}, 1 fresh slot"], slotted, split), {}))
        out.append((key, row, per_case))
    return sorted(out, key=lambda run: list(MODEL_ROWS).index(run[0]))


def frontier(scorer: ColdModelScorer, split: ColdSplit) -> dict[str, list[dict[str, float]]]:
    """Cold- and warm-target NDCG@10 of the tower's model with its cold items placed
    higher among the trained ones: "shift" adds each of SHIFTS to every cold item's
    score; "mixture" ranks by `Calibrated` at each (prior, temperature) of MIXTURES.
    What placing them higher would cost on warm targets: a diagnostic of the
    trade-off, read off the test cases; neither is ever applied to a model."""
    seen: dict[bytes, np.ndarray] = {}
    encode = scorer.queries

    def queries(histories: np.ndarray) -> np.ndarray:  # each batch encoded once
        key = histories.tobytes() + str(histories.shape).encode()
        if key not in seen:
            seen[key] = encode(histories)
        return seen[key]

    scorer.queries = queries

    def point(placed: Scorer, **settings: float) -> dict[str, float]:
        row = _evaluate("placed", placed, split)
        return settings | {"cold NDCG@10": row["cold"]["NDCG@10"],
                           "warm NDCG@10": row["warm"]["NDCG@10"]}

    return {"shift": [point(_Shifted(scorer, split.num_warm, shift), shift=shift)
                      for shift in SHIFTS],
            "mixture": [point(Calibrated(scorer, split.num_warm, prior, t), prior=prior,
                              temperature=t) for prior, t in MIXTURES]}


class _Shifted:
    """A scorer with `shift` added to the scores of the rows past `num_warm`."""

    def __init__(self, scorer: Scorer, num_warm: int, shift: float) -> None:
        self.scorer, self.num_warm, self.shift = scorer, num_warm, shift

    def score(self, histories: np.ndarray) -> np.ndarray:
        scores = np.array(self.scorer.score(histories), dtype=np.float32)
        scores[:, self.num_warm + 1 :] += self.shift
        return scores


def _mean_row(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the mean figures of `runs` (the same model, other seeds); the runs'
    own figures under "runs", the spread (standard deviation over runs) beside each mean."""
    row: dict[str, Any] = {"name": name}
    for kind in ("cold", "warm"):
        if kind not in runs[0]:
            continue
        ndcg = [r[kind]["NDCG@10"] for r in runs]
        row[kind] = {"HR@10": float(np.mean([r[kind]["HR@10"] for r in runs])),
                     "NDCG@10": float(np.mean(ndcg)),
                     "NDCG@10 se": float(np.mean([r[kind]["NDCG@10 se"] for r in runs])),
                     "NDCG@10 spread": float(np.std(ndcg, ddof=1)) if len(runs) > 1 else 0.0,
                     "users": runs[0][kind]["users"]}
    if "warm_without_cold_items" in runs[0]:
        row["warm_without_cold_items"] = {
            k: float(np.mean([r["warm_without_cold_items"][k] for r in runs]))
            for k in ("HR@10", "NDCG@10")}
    if "frontier" in runs[0]:
        row["frontier"] = {kind: [{k: float(np.mean([r["frontier"][kind][i][k] for r in runs]))
                                   for k in point} for i, point in enumerate(points)]
                           for kind, points in runs[0]["frontier"].items()}
    if "seconds" in runs[0]:
        row["model"] = runs[0]["model"]
        row["content"] = runs[0].get("content")
        row["runs"] = [{k: r[k] for k in ("seed", "epochs", "best_epoch", "seconds", "stopped")}
                       | {f"{kind} NDCG@10": r[kind]["NDCG@10"] for kind in ("cold", "warm")}
                       for r in runs]
    return row


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
