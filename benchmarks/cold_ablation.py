"""`streamrec bench cold --ablation`: the content tower's settings, tried on a tuning split.

Each variant of `VARIANTS` (a ContentConfig) trains a model with a tower on the cold
split of `--seed` (use another seed than the reported 42: the settings are chosen
here and only the chosen ones are run on 42), once per training seed, beside the
model without features on the same seeds; every figure is the mean over the seeds,
with its spread. The table goes to docs/bench/cold-ablation.json and from there to the
"Item cold start" section of docs/QUALITY.md (`cold_report.py`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import numpy as np
import torch

from streamrec.bench import cold_report
from streamrec.bench.cold_items import load_split, model_runs
from streamrec.bench.cold_options import ColdOptions
from streamrec.bench.report import DOCS, machine
from streamrec.encoder.config import ContentConfig

logger = logging.getLogger(__name__)

# name -> the ContentConfig fields it sets; every other field is the default.
VARIANTS: dict[str, dict[str, Any]] = {
    "no vocabulary (the tower before it)": {"min_items": 0, "unknown_rows": False},
    "no vocabulary, id_dropout 0.2": {"min_items": 0, "unknown_rows": False,
                                      "id_dropout": 0.2},
    "min_items 1": {"min_items": 1, "unknown_rows": False},
    "min_items 2": {"min_items": 2, "unknown_rows": False},
    "min_items 3": {"min_items": 3, "unknown_rows": False},
    "min_items 2, token dropout 0.2": {"min_items": 2, "unknown_rows": False,
                                       "token_dropout": 0.2},
    "min_items 2, id_dropout 0.2": {"min_items": 2, "unknown_rows": False, "id_dropout": 0.2},
    "min_items 2, id_dropout 0.7": {"min_items": 2, "unknown_rows": False, "id_dropout": 0.7},
    "min_items 2 + unknown rows": {"min_items": 2, "unknown_rows": True},
    "min_items 3 + unknown rows": {"min_items": 3, "unknown_rows": True},
    "min_items 2 + unknown rows, id_dropout 0.2": {"min_items": 2, "unknown_rows": True,
                                                   "id_dropout": 0.2},
    "min_items 2 + unknown rows, id_dropout 0.35": {"min_items": 2, "unknown_rows": True,
                                                    "id_dropout": 0.35},
}
FIXED = {"id_dropout": 0.5, "token_dropout": 0.0}  # what a variant that names neither has


def run(options: ColdOptions) -> dict[str, Any]:
    """Train every variant (and the model without features) `repeats` times; report."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    _, features, split = load_split(options)
    seeds = range(options.seed, options.seed + options.repeats)
    plain: list[dict[str, Any]] = []
    rows = []
    for number, (name, fields) in enumerate(VARIANTS.items()):
        content = dataclasses.replace(ContentConfig(), **(FIXED | fields))
        runs: dict[str, list[dict[str, Any]]] = {"model+content": [],
                                                 "model+content, cold only": []}
        for seed in seeds:
            for key, row, _ in model_runs(split, features, content, seed, options.minutes,
                                          plain=number == 0):
                (plain if key == "model" else runs[key]).append(row)
        rows.append(_variant_row(name, content, runs))
        print(f"[bench] {name}: {rows[-1]}", flush=True)
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "split_seed": options.seed, "seeds": list(seeds), "cold_cases": len(split.cold_cases),
        "warm_cases": len(split.warm_cases),
        "without_features": {"warm NDCG@10": _mean_sd([r["warm"]["NDCG@10"] for r in plain]),
                             "seconds": float(np.mean([r["seconds"] for r in plain]))},
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if options.report:
        path = (DOCS / cold_report.COLD_JSON).parent / cold_report.ABLATION_JSON
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        quality_md = DOCS / "QUALITY.md"
        if quality_md.is_file():
            text = quality_md.read_text(encoding="utf-8")
            quality_md.write_text(cold_report.with_cold_section(text), encoding="utf-8")
        print(f"[bench] wrote {path} and the QUALITY.md section", flush=True)
    return doc


def _variant_row(name: str, content: ContentConfig,
                 runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A variant's mean figures over its runs, each with its spread over the seeds."""
    tower, among = runs["model+content"], runs["model+content, cold only"]
    return {
        "name": name, "content": dataclasses.asdict(content),
        "cold NDCG@10": _mean_sd([r["cold"]["NDCG@10"] for r in tower]),
        "cold HR@10": _mean_sd([r["cold"]["HR@10"] for r in tower]),
        "among cold NDCG@10": _mean_sd([r["cold"]["NDCG@10"] for r in among]),
        "warm NDCG@10": _mean_sd([r["warm"]["NDCG@10"] for r in tower]),
        "seconds": float(np.mean([r["seconds"] for r in tower])),
    }


def _mean_sd(values: list[float]) -> list[float]:
    """[mean, standard deviation over the runs (0 for one run)]."""
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return [float(np.mean(values)), sd]
