"""The "Training recipe ablation" section of docs/QUALITY.md, from `bench ablation`'s JSON.

`train_ablation.py` trains the runs and summarises them into
docs/bench/train-ablation.json; this module renders that summary and puts the section
in place of any older one (`with_ablation_section`), which `quality_games.py` also calls
when it regenerates QUALITY.md, so neither script drops the other's part. No torch here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from streamrec.bench import report

logger = logging.getLogger(__name__)

HEADING = "## Training recipe ablation"
BEFORE = "\n## How the configuration was chosen"  # the section goes before this one
ABLATION_JSON = "bench/train-ablation.json"  # under docs/ (report.DOCS)
BASELINE = "baseline"
SHIFTED_BASELINE = "shifted-baseline"  # the baseline of the rows with `shifted`
COLUMNS = ("variant", "change", "val NDCG@10 mean ± std", "min-max", "delta", "beyond spread",
           "val HR@10", "all-val NDCG@10", "s100 NDCG@10", "epochs", "min/run")


def _cell(stats: dict[str, float] | None, std: bool = False) -> str:
    if stats is None:
        return "-"
    return f"{stats['mean']:.4f}" + (f" ± {stats['std']:.4f}" if std else "")


def render(doc: dict[str, Any]) -> str:
    """The markdown section of `doc` (what `summarise` returned)."""
    lines = []
    for r in doc["rows"]:
        v = r["val_ndcg10"]
        if "delta" not in r:
            verdict, delta = "-", "-"
        else:
            delta = f"{r['delta']:+.4f}"
            better = sum(d > 0 for d in r["paired_deltas"])
            verdict = ({True: "**gain**" if r["delta"] > 0 else "loss", False: "no",
                        None: "n/a (1 seed)"}[r["beyond_spread"]]
                       + f" ({better}/{len(r['paired_deltas'])} seeds up)")
        if r["variant"] in (BASELINE, SHIFTED_BASELINE):
            verdict = "-"
        lines.append(
            f"| {r['variant']} | {r['change']} | {v['mean']:.4f} ± {v['std']:.4f} "
            f"(n={len(r['seeds'])}) | {v['min']:.4f}-{v['max']:.4f} | {delta} | {verdict} | "
            f"{_cell(r.get('val_hr10'))} | {_cell(r.get('all_ndcg10'))} | "
            f"{_cell(r.get('s100_ndcg10'))} | {r['epochs']['mean']:.0f} "
            f"(best {', '.join(map(str, r['best_epoch']))}) | {r['minutes']['mean']:.1f} |")
    seeds = ", ".join(map(str, doc["seeds"]))
    return f"""
{HEADING}

Measured by `streamrec bench ablation` ({doc['date']}; {doc['machine']}). Each row is
the `games` recipe the ablation started from (8 epochs, the validation item held out:
the preset has since taken 16 epochs and `fit_validation` from it) with one change,
trained with seeds {seeds} ({doc['runs']} runs,
{doc['parallel']} at a time, so two runs shared the 2 cores; minutes are each run's own
training time, validation passes included). Validation split only, the test split is
not read: "val NDCG@10" is training's best full-ranking NDCG@10 on the preset's 8,000
validation users (a fixed draw per seed, so every variant of a seed sees the same users;
seeds see different ones), mean ± sample std over the seeds, then min-max. "delta" is
the mean's difference to the baseline; it counts as a gain only when it is larger than
the larger of the two stds ("beyond spread"); "seeds up" compares each seed with the
baseline's run on the same seed. "all-val" and "s100" score the kept model once on
every validation user: full ranking, and sampled-100 (100 unseen items drawn uniformly,
as in the test table). The `shifted-` rows measure what training on each user's
validation item adds (`fit_validation`) without reading the test split: every user's
last item is removed first, so the scored item is the real validation item and the
item before it plays the validation item's part; their val figures are full-ranking
NDCG@10 / HR@10 on every user, and their delta is against shifted-baseline. Earlier
single-seed tuning runs are under "How the configuration was chosen" below and are
not repeated here.

{report.table(COLUMNS, [])}
{chr(10).join(lines)}

{_verdicts(doc["rows"])}
"""


def _verdicts(rows: list[dict[str, Any]]) -> str:
    """One line naming the changes whose difference to the baseline beats the spread."""
    def named(gain: bool) -> str:
        picked = [f"{r['variant']} ({r['delta']:+.4f})" for r in rows
                  if r.get("beyond_spread") and (r["delta"] > 0) == gain]
        return ", ".join(picked) or "none"

    return (f"Beyond the spread, gains: {named(True)}; losses: {named(False)}. "
            "Every other change is within it (or has one seed only).")


def with_ablation_section(text: str, path: Path | None = None) -> str:
    """`text` (QUALITY.md) with the section from `path` (default: docs' JSON) in place
    of any older one; `text` unchanged when nothing was measured."""
    return report.put_json_section(text, path or report.DOCS / ABLATION_JSON, render,
                                   HEADING, BEFORE)


def save(doc: dict[str, Any]) -> Path:
    """Keep `doc` as JSON under docs/ and write its section into QUALITY.md there."""
    return report.save_quality_section(doc, ABLATION_JSON, with_ablation_section)
