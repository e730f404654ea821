"""The "Item cold start" section of docs/QUALITY.md, from `bench cold`'s JSON.

`bench cold` keeps its figures in docs/bench/cold-items.json and writes this
section; `quality_games.py`, which regenerates QUALITY.md from a training run, puts
it back from the same JSON (as it does for `bench compress`), so neither script
drops the other's part. No torch here: rendering needs none.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from streamrec.bench import report

COLD_JSON = "bench/cold-items.json"  # under docs/ (report.DOCS)
ABLATION_JSON = "cold-ablation.json"  # beside it: `bench cold --ablation`'s tower settings
HEADING = "## Item cold start"
BEFORE = "\n## How the configuration was chosen"  # the section goes before this one
COLD_GAIN = 1.2  # the target: >= 20% above the strongest baseline on cold targets
WARM_LOSS = 0.99  # and warm targets within 1% of the model without features
SOURCE = """\
The data: MovieLens, from GroupLens Research at the University of Minnesota
(https://grouplens.org/datasets/movielens/1m/ for ml-1m, .../100k/ for ml-100k;
F. Maxwell Harper and Joseph A. Konstan, 2015, "The MovieLens Datasets: History and
Context", ACM Transactions on Interactive Intelligent Systems 5(4), 19:1-19:19). Its
licence (the README in each archive) allows research use, requires acknowledging the
data in publications, and forbids redistributing it without GroupLens' permission and
any commercial use without theirs: the project ships no MovieLens file, only the
converter. To run this section yourself (`.cache/` is git-ignored):

```
curl -LO https://files.grouplens.org/datasets/movielens/ml-1m.zip
unzip ml-1m.zip -d .cache/
streamrec data movielens --src .cache/ml-1m --out .cache/movielens
streamrec bench cold            # --data DIR for another converted folder
```

ml-100k (`ml-100k.zip` from the same page family, the same licence terms) converts and
runs the same way; the section names the dataset it measured.

`streamrec data movielens` copies the ratings file (`--format movielens` reads it as it
is) and writes `items.jsonl`, one item record a line (the items topic's shape):
categories = the genres plus the release decade (`decade:1990s`), text = the title
without its year (a trailing article moved to the front). Unit tests never read
MovieLens: they plant category structure in generated data
(`tests/unit/encoder/test_cold*.py`, `test_movielens.py`)."""


DATASETS = {"ratings.dat": "MovieLens 1M", "u.data": "MovieLens 100K"}


def _fill(text: str) -> str:
    """One paragraph wrapped at 88 columns (the figures make lines of any length)."""
    return textwrap.fill(" ".join(text.split()), width=88, break_on_hyphens=False)


def _cells(row: dict[str, Any], kind: str) -> str:
    figures = row.get(kind)
    if not figures:
        return "– | –"
    se = figures.get("NDCG@10 se")
    spread = f" ± {se:.4f}" if se is not None else ""
    return f"{figures['HR@10']:.4f} | {figures['NDCG@10']:.4f}{spread}"


def _best_baseline(rows: dict[str, Any]) -> str:
    return max((k for k in "abcd" if k in rows), key=lambda k: rows[k]["cold"]["NDCG@10"])


def _verdicts(rows: dict[str, Any]) -> list[str]:
    """The issue's two targets, met or not, with the figures behind them."""
    best_key = _best_baseline(rows)
    best_name, best = rows[best_key]["name"], rows[best_key]["cold"]["NDCG@10"]
    tower, plain = rows.get("model+content"), rows.get("model")
    if tower is None or plain is None:
        return [f"- not measured yet: the model with features (strongest baseline on cold "
                f"targets: {best_name}, NDCG@10 {best:.4f}; the target is "
                f">= {COLD_GAIN * best:.4f})"]
    cold, warm = tower["cold"]["NDCG@10"], tower["warm"]["NDCG@10"]
    plain_warm = plain["warm"]["NDCG@10"]
    paired = tower.get("paired_se", {})
    cold_se = paired.get("cold_vs_best_baseline")
    warm_se = paired.get("warm_vs_model")
    cold_gain = f"{cold / best - 1:+.0%}" if best > 0 else "no baseline scored"
    return [
        f"- {'met' if cold >= COLD_GAIN * best else '**not met**'}: cold-target NDCG@10 "
        f"{cold:.4f} vs the strongest baseline, {best_name}, {best:.4f} ({cold_gain}; "
        f"target +20%{'' if cold_se is None else f'; paired standard error {cold_se:.4f}'})",
        f"- {'met' if warm >= WARM_LOSS * plain_warm else '**not met**'}: warm-target NDCG@10 "
        f"{warm:.4f} vs {plain_warm:.4f} without features ({warm / plain_warm - 1:+.1%}; "
        f"target within -1%{'' if warm_se is None else f'; paired standard error {warm_se:.4f}'})",
    ]


def _reading(rows: dict[str, Any], split: dict[str, Any]) -> str:
    """What the figures say, in words computed from them (empty before the models ran)."""
    tower, among = rows.get("model+content"), rows.get("model+content, cold only")
    if tower is None or among is None:
        return ""
    d = rows["d"]["cold"]["NDCG@10"]
    text = (f"Reading the table: ranked among the cold items alone (as (d) ranks them), the "
            f"tower's content vectors reach NDCG@10 {among['cold']['NDCG@10']:.4f}, "
            f"{among['cold']['NDCG@10'] / d - 1:+.0%} against (d)'s {d:.4f}")
    if tower["cold"]["NDCG@10"] < 0.5 * among["cold"]["NDCG@10"]:
        text += (f"; over the whole catalogue they score below the trained items (cold-target "
                 f"NDCG@10 {tower['cold']['NDCG@10']:.4f}): the tower orders new items, but "
                 "what a title and genres say about an item the model never saw rarely makes "
                 "it likelier than the trained items a user's history points to (the "
                 "trade-off table below)")
    without = tower.get("warm_without_cold_items")
    if without is not None:
        text += (f". On warm targets the tower's model scores {without['NDCG@10']:.4f} with the "
                 "cold items left out of the catalogue, so what it loses there is not the cold "
                 "items crowding out known ones")
    se = rows["model"]["warm"].get("NDCG@10 se")
    if se is not None:
        text += (f". With {split['warm_cases']:,} warm cases one model's NDCG@10 is known to "
                 f"about ±{se:.4f} (one standard error)")
    paired = tower.get("paired_se", {}).get("warm_vs_model")
    if paired:
        gap = tower["warm"]["NDCG@10"] - rows["model"]["warm"]["NDCG@10"]
        plain = rows["model"]["warm"]["NDCG@10"]
        text += (f"; the two models' warm figures differ by {gap:+.4f} ({gap / plain:+.1%}), "
                 f"{abs(gap) / paired:.1f} paired standard errors, so a difference within "
                 f"±{2 * paired / plain:.0%} is all these {split['warm_cases']:,} cases can "
                 "resolve: not 1%")
    return _fill(text + ".")


def _note(row: dict[str, Any]) -> str:
    """How a model row was trained: its runs (seeds, warm figures, epochs, seconds)."""
    runs = row.get("runs")
    note = ""
    if runs:
        seeds = [r["seed"] for r in runs]
        epochs, seconds = [r["epochs"] for r in runs], [r["seconds"] for r in runs]
        warm = " / ".join(f"{r['warm NDCG@10']:.4f}" for r in runs)
        note = (f"mean of {len(runs)} trainings (seeds {min(seeds)}-{max(seeds)}: warm NDCG@10 "
                f"{warm}, spread ±{row['warm']['NDCG@10 spread']:.4f}); {min(epochs)}-"
                f"{max(epochs)} epochs, {min(seconds):.0f}-{max(seconds):.0f} s each")
    elif "seconds" in row:
        note = (f"{row['epochs']} epochs, {row['seconds']:.0f} s "
                f"(best epoch {row['best_epoch']}, stopped: {row['stopped']})")
    if "warm_without_cold_items" in row:
        w = row["warm_without_cold_items"]
        note += f"; warm with cold items left out: {w['HR@10']:.4f} / {w['NDCG@10']:.4f}"
    return note


def _frontier(rows: dict[str, Any]) -> str:
    """The tower's cold/warm trade-off when its cold items are placed higher: by a
    constant added to their scores, and by the calibrated mixture."""
    points = rows.get("model+content", {}).get("frontier")
    if not points:
        return ""
    if isinstance(points, list):  # written before the mixture was measured
        points = {"shift": points}
    best = COLD_GAIN * rows[_best_baseline(rows)]["cold"]["NDCG@10"]
    plain = rows["model"]["warm"]["NDCG@10"]
    shifts = points["shift"]
    table = "\n".join(f"| {p['shift']:+.1f} | {p['cold NDCG@10']:.4f} | {p['warm NDCG@10']:.4f} |"
                      for p in shifts)
    reach = next((p for p in shifts if p["cold NDCG@10"] >= best), None)
    verdict = (f"no shift up to {shifts[-1]['shift']:+.1f} reaches the cold target "
               f"(>= {best:.4f})" if reach is None else
               f"the smallest shift that reaches the cold target (>= {best:.4f}), "
               f"{reach['shift']:+.1f}, leaves warm-target NDCG@10 at "
               f"{reach['warm NDCG@10']:.4f}, {reach['warm NDCG@10'] / plain - 1:+.0%} against "
               "the model without features")
    text = _fill(
        "What placing the cold items higher among the trained ones would cost (a diagnostic "
        "read off the test cases, never applied to a model): a constant added to every cold "
        f"item's score of the tower's model, NDCG@10 averaged over its trainings; {verdict}.")
    out = (f"{text}\n\n| added to the cold items' scores | cold NDCG@10 | warm NDCG@10 |\n"
           f"|---|---|---|\n{table}\n")
    mixtures = points.get("mixture")
    if mixtures:
        out += "\n" + _mixtures(mixtures, shifts, best, plain)
    return out


def _placed(points: list[dict[str, float]], best: float, plain: float
            ) -> tuple[dict[str, float] | None, float | None]:
    """Of trade-off `points`: the one reaching the cold target `best` with the highest
    warm figure, and the highest cold figure within 1% of `plain` on warm targets."""
    reach = [p for p in points if p["cold NDCG@10"] >= best]
    kept = [p["cold NDCG@10"] for p in points if p["warm NDCG@10"] >= WARM_LOSS * plain]
    return (max(reach, key=lambda p: p["warm NDCG@10"]) if reach else None,
            max(kept) if kept else None)


def _mixtures(points: list[dict[str, float]], shifts: list[dict[str, float]], best: float,
              plain: float) -> str:
    """The same trade-off through `encoder.cold.Calibrated`, beside the shifts'."""
    table = "\n".join(f"| {p['prior']:.2f} | {p['temperature']:.1f} | {p['cold NDCG@10']:.4f} "
                      f"| {p['warm NDCG@10']:.4f} |" for p in points)
    top, kept = _placed(points, best, plain)
    shift_top, shift_kept = _placed(shifts, best, plain)

    def loss(point: dict[str, float] | None) -> str:
        return "none" if point is None else f"{point['warm NDCG@10'] / plain - 1:+.0%}"

    verdict = ("none reaches the cold target" if top is None else
               f"the best that reaches the cold target (prior {top['prior']:.2f}, temperature "
               f"{top['temperature']:.1f}) leaves warm-target NDCG@10 at "
               f"{top['warm NDCG@10']:.4f}, {loss(top)} (the shifts' best: {loss(shift_top)})")
    verdict += ("; none keeps warm targets within 1% of the model without features"
                if kept is None else "; within 1% on warm targets the cold targets reach "
                f"at most {kept:.4f} (the shifts: "
                f"{'none' if shift_kept is None else f'{shift_kept:.4f}'})")
    text = _fill(
        "The same trade-off with the two kinds of items made comparable first "
        "(`encoder/cold.py`, `Calibrated`): each user's scores become a softmax over the "
        "trained items and one over the cold items (their scores divided by a temperature "
        "below 1, which sharpens what the tower says), mixed by a prior share of next "
        "events that go to a cold item, so that a user's cold items rise by how much their "
        "scores stand out among the cold ones rather than by one constant for everyone. "
        f"Of the settings below, {verdict}.")
    return (f"{text}\n\n| prior share of cold items | temperature | cold NDCG@10 | "
            f"warm NDCG@10 |\n|---|---|---|---|\n{table}\n")


def _ablation(doc: dict[str, Any] | None) -> str:
    """The table of `bench cold --ablation` (empty when it has not run)."""
    if not doc:
        return ""

    def cell(figures: list[float]) -> str:
        return f"{figures[0]:.4f} ± {figures[1]:.4f}"

    rows = "\n".join(
        f"| {r['name']} | {cell(r['cold HR@10'])} | {cell(r['cold NDCG@10'])} | "
        f"{cell(r['among cold NDCG@10'])} | {cell(r['warm NDCG@10'])} | {r['seconds']:.0f} |"
        for r in doc["rows"])
    seeds = doc["seeds"]
    plain = doc["without_features"]
    text = _fill(
        f"How the tower's settings were chosen (`streamrec bench cold --ablation --seed "
        f"{doc['split_seed']} --repeats {len(seeds)}`, {doc['date']}; {doc['machine']}): each "
        f"setting trained a model on the cold split of seed {doc['split_seed']}, not the "
        f"reported one, once per training seed ({', '.join(map(str, seeds))}); figures are the "
        "mean ± the spread (standard deviation) over those trainings. Cold: full ranking over "
        "the whole catalogue; among cold: the cold items ranked among themselves; training "
        f"seconds per model. The model without features: warm NDCG@10 "
        f"{cell(plain['warm NDCG@10'])}, {plain['seconds']:.0f} s.")
    return (f"{text}\n\n| tower setting | cold HR@10 | cold NDCG@10 | among cold NDCG@10 | "
            f"warm NDCG@10 | training s |\n|---|---|---|---|---|---|\n{rows}\n")


def render(doc: dict[str, Any], ablation: dict[str, Any] | None = None) -> str:
    """The markdown section of `doc` (what `bench cold` saved), with the table of
    `ablation` (what `bench cold --ablation` saved) when given."""
    rows, data, split = doc["rows"], doc["data"], doc["split"]
    table = [f"| {row['name']} | {_cells(row, 'cold')} | {_cells(row, 'warm')} | "
             f"{_note(row)} |" for row in rows.values()]
    per_user = split["targets_per_user"]
    cases = ("every cold interaction" if per_user == 0 else
             f"each user's last {per_user} cold interaction(s)")
    model = next((r["model"] for r in rows.values() if "model" in r), None)
    model_text = "" if model is None else (
        f" Both models: the `auto` preset for this data ({model['blocks']} blocks, "
        f"{model['heads']} heads, hidden {model['hidden']}, max history {model['max_len']}), "
        "trained on the trained items only (the tower on their features only), validated "
        "on their leave-one-out, 1 thread.")
    dataset = DATASETS.get(data["ratings"], "MovieLens")
    intro = (f"Measured by `streamrec bench cold` ({doc['date']}; {doc['machine']}) on "
             f"{dataset} (`{data['source']}/{data['ratings']}`): {data['users']:,} users, "
             f"{data['items']:,} items, {data['interactions']:,} interactions "
             f"({data['with_features']:,} items with features)."
             + (f" {data['note']}" if data.get("note") else ""))
    protocol = (
        f"Protocol (`encoder/cold.py`): {split['fraction']:.0%} of the items, drawn at random "
        f"(seed {split['seed']}), are held out of training entirely ({split['cold_items']:,} "
        f"cold, {split['trained_items']:,} trained; {split['train_interactions']:,} training "
        "interactions). Every scorer ranks the whole catalogue (trained + cold items) with "
        "the user's history excluded; ties count against the target. Cold targets: "
        f"{cases} with a trained item before it ({split['cold_cases']:,} cases; the history "
        "keeps earlier cold items, which a model without a row for them drops from its "
        "input). Warm targets: each user's last trained item, the leave-one-out test of the "
        f"training data ({split['warm_cases']:,} cases). Baselines "
        "(`encoder/cold_baselines.py`): (b) ranks the items sharing a category with the "
        "user's last 10 items first, each group by training count, a cold item counted at "
        "the mean count of the trained items of its categories; (c) and (d) rank by the "
        "cosine between an item's TF-IDF bag of categories and title words and the mean bag "
        "of the user's last 10 items, (d) among the cold items only. NDCG@10 is given ± one "
        f"standard error over the cases.{model_text}")
    reading = _reading(rows, split)
    extras = "".join(chr(10) + part for part in (_frontier(rows), _ablation(ablation)) if part)
    return f"""
{HEADING}

{_fill(intro)}

{_fill(protocol)}

| scorer | cold HR@10 | cold NDCG@10 | warm HR@10 | warm NDCG@10 | note |
|---|---|---|---|---|---|
{chr(10).join(table)}

Targets of the issue:
{chr(10).join(_verdicts(rows))}
{chr(10) + reading + chr(10) if reading else ""}{extras}
{SOURCE}
"""


def with_cold_section(text: str, path: Path | None = None) -> str:
    """`text` (QUALITY.md) with the section from `path` (default: docs' JSON) in place
    of any older one; `text` unchanged when nothing was measured."""
    path = path or report.DOCS / COLD_JSON
    ablation = path.parent / ABLATION_JSON
    tuned = json.loads(ablation.read_text(encoding="utf-8")) if ablation.is_file() else None
    return report.put_json_section(text, path, lambda doc: render(doc, tuned), HEADING,
                                   BEFORE)


def save(doc: dict[str, Any]) -> Path:
    """Keep `doc` as JSON under docs/ and write its section into QUALITY.md there."""
    return report.save_quality_section(doc, COLD_JSON, with_cold_section)
