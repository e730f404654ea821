"""The text of docs/QUALITY.md's own sections, from the runs `quality_games.py` trained.

`render` writes the report (results, targets, training, the seeds' spread) from a
run's `results.json` and `config.json`; `render_warm` the warm-start section from
`warm_start.json`; `plot_curve` the validation curve. Nothing here trains.
"""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

from streamrec.bench.quality_tuning import TUNING

PAPER = {"HR@10": 0.7410, "NDCG@10": 0.5360}  # SASRec paper, Table III, Games, sampled-100
TARGET_NDCG = 0.070  # issue 24: full-ranking NDCG@10 of the default recipe, seed mean


def render_warm(doc: dict) -> str:
    """The "Warm-started retrain vs full retrain" section from `warm_start.json`."""
    runs, default = doc["runs"], doc["default_epochs"]
    full, base = runs["full"], runs["base"]
    warm = runs["warm-default"]
    grown = warm["warm_start"]
    warm_runs = sorted((k for k in runs if k.startswith("warm-")), key=lambda k: runs[k]["epochs"])
    names = {"full": "full retrain (games preset)"} | {
        k: "warm start (default)" if k == "warm-default" else "warm start" for k in warm_runs}
    rows = [f"| {label} | {runs[k]['epochs']} | {runs[k]['train_seconds']:.0f} | "
            f"{runs[k]['full']['NDCG@10']:.4f} | {runs[k]['full']['HR@10']:.4f} | "
            f"{runs[k]['sampled']['HR@10']:.4f} | {runs[k]['sampled']['NDCG@10']:.4f} |"
            for k, label in names.items()]
    return f"""
## Warm-started retrain vs full retrain
The previous version: the games preset trained on `games.txt` without each user's last
2 interactions ({base['items']:,} items, {base['train_seconds']:.0f} s). A retrain on the
full log then either warm-starts from it (`streamrec train --warm-start PREVIOUS`: its
weights, the item table grown by the {grown['new_items']:,} items it had not seen, each
placed at the PPMI-weighted mean of the trained rows it co-occurs with:
{grown['from_old_neighbours']:,} from old neighbours, {grown['from_new_neighbours']:,} from
new ones, {grown['random']:,} at random) or trains from scratch. Both are tested on the
same test split; the previous version never saw a validation or test item. Here the new
items are the ones the previous version lacked because they occur only among users' last
2 items: as some user's validation item, which the recipe trains on (`fit_validation`),
an item starts among the items of that user's history; one seen only as a test item has
nothing to start from (the placement is tested in `tests/unit/encoder/test_warm_start.py`;
before d339fe0 the neighbours were read without the validation items, and 13 new items
were placed).

| run | epochs | train s | full NDCG@10 | full HR@10 | sampled HR@10 | sampled NDCG@10 |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

The default warm start ({default} epochs) reaches
{warm['full']['NDCG@10'] / full['full']['NDCG@10']:.0%} of the full retrain's full-ranking
NDCG@10 and {warm['sampled']['HR@10'] / full['sampled']['HR@10']:.0%} of its sampled-100
HR@10 in {warm['train_seconds'] / full['train_seconds']:.0%} of its training time
(train seconds include any validation passes, not the test evaluation; one run each on
a shared machine, where times move with what else runs; the full retrain is the first
seed's run, which trained beside another seed's, the warm starts ran one at a time, so
the work is the steadier ratio: {warm['epochs']} of the full retrain's {full['epochs']}
epochs over the same log, {warm['epochs'] / full['epochs']:.0%}; the metrics are
deterministic). Warm starts train at twice the recipe's peak rate
(`warm_start_lr_scale`, 2e-3): the default warm start at the recipe's own 1e-3 gave
0.0716 / 0.0722 / 0.0719 full NDCG@10 over seeds 42 / 1 / 2, at 2e-3 0.0728 / 0.0732 /
0.0731 (2026-12-04, AMD EPYC; 3e-3: 0.0724, seed 42). A shorter weight average for
the short run (the recipe's EMA, 0.999, spans about 1,000 of the warm start's ~2,400
steps) changed nothing: 0.0727 at decay 0.995, 0.99 and without one (seed 42, 2e-3).
What is left of the gap is on the items the previous version knew: the 1,182 test
targets that occur only among users' last 2 items score 0 for the full retrain as well,
and most of the gap is on targets the previous version had seen 5-99 times.

**Not met: within 1% of the full retrain.** What was tried to close the gap (2026-12-05,
AMD EPYC, each run on one thread beside another). Chosen on a validation copy of the
experiment, the same construction one item earlier (previous version without each
user's last 3 items, retrains on the log without its last item, scored on the
validation items), 3 seeds: the default warm start 0.0754 mean NDCG@10 (0.0763 /
0.0746 / 0.0752 at seeds 42 / 1 / 2) against the full retrain's 0.0771 (0.0766 /
0.0774 / 0.0773), -2.2%; batches of 128 for 8 epochs, about the default's time, 0.0751
(0.0755 / 0.0752 / 0.0746; on the test split it had given 0.0749 at seed 42, which the
validation copy does not confirm); the rows of old items whose count at least doubled,
or of every old item, moved toward the PPMI mean of their new neighbours by the share of
their interactions the previous version had not seen: 0.0761 and 0.0761 against 0.0763
(seed 42); a warmup-stable-decay schedule (the peak rate held to 75% of the steps,
then a linear decay; the previous version keeps its averaged weights from the start of
the decay, and the warm start goes on from them: 5 epochs of linear decay at the
recipe's 1e-3), so that a retrain redoes only the previous version's decay on the new
log: warm 0.0749 (0.0754 / 0.0742 / 0.0750) against 0.0763 for a full retrain on that
schedule (0.0759 / 0.0766 / 0.0765; the linear decay's 0.0771 above is the EPYC's),
-1.8% (2026-12-05 21:23-21:40, Intel Xeon, scratch runs). Two more on the validation
copy, seed 42 (2026-12-06 00:33-00:51, Intel Xeon, scratch runs, where the full retrain
gave 0.0766 and the default warm start 0.0763, as on the EPYC): the transformer blocks
started afresh, the item table and positions kept, 0.0760, and only the item table
kept, 0.0756, so the old blocks are not what holds the warm start back; the loss on
each sequence's 2 newest targets alone (those the previous version never trained
on), 0.0682, and with each older target kept at random with probability 0.25 or 0.5,
0.0736 and 0.0747: the old positions carry the quality, and less training on them
only loses. On the test split, seed 42:
the old weights shrunk to 0.5 or 0.7 and N(0, 0.01) added (shrink and perturb, Ash &
Adams 2020) 0.0725 and 0.0729 against 0.0729; 1,024 negatives to buy epochs, 0.0723 at 5
epochs and 0.0730 at 10 epochs of 128 users; dropout 0.4, 0.0715. More epochs do not
close it either: 10 and 16 warm epochs reached 0.0739 and 0.0743 on the test split, the
latter in the full retrain's time and with a lower training loss than it (4.90 against
4.92): the warm-started model fits the log better and ranks the held-out items worse,
the generalisation gap that Ash & Adams report for warm-started networks.
Machine: {doc['machine']}. Run by `python benchmarks/quality_games.py --warm-start`;
the default warm start is

```
{doc['commands']["warm-default"]}
```
"""


def plot_curve(history: list[dict[str, float]], path: Path) -> None:
    """Validation NDCG@10 (full ranking) by epoch, with the training loss beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if "val_ndcg10" in h]  # none with fit_validation
    fig, left = plt.subplots(figsize=(7, 4), dpi=110)
    if rows:
        left.plot([h["epoch"] for h in rows], [h["val_ndcg10"] for h in rows], "o-", ms=3,
                  color="tab:blue", label="validation NDCG@10 (full ranking)")
        left.axhline(TARGET_NDCG, ls="--", color="tab:gray", lw=1,
                     label=f"{TARGET_NDCG} (target, on the test split)")
    left.set_xlabel("epoch")
    left.set_ylabel("validation NDCG@10")
    right = left.twinx()
    right.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:orange",
               lw=1, alpha=0.7, label="training loss")
    right.set_ylabel("training loss")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles=handles, loc="center right", fontsize=8)
    left.set_title("SASRec on Amazon Games (2-core CPU)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__} on "
            f"{'CUDA' if torch.cuda.is_available() else 'CPU'}, {platform.python_version()}")


def render_seeds(per_seed: dict[int, dict]) -> str:
    """The test figures of every seed's run, then mean ± sample std (and min-max)."""
    names = {"full NDCG@10": ("full", "NDCG@10"), "full HR@10": ("full", "HR@10"),
             "sampled NDCG@10": ("sampled", "NDCG@10"), "sampled HR@10": ("sampled", "HR@10")}
    rows = [f"| {seed} | " + " | ".join(f"{row[a][b]:.4f}" for a, b in names.values())
            + f" | {row['epochs']} | {row['train_seconds'] / 60:.1f} |"
            for seed, row in per_seed.items()]
    if len(per_seed) > 1:
        cells = []
        for a, b in [*names.values()]:
            values = [row[a][b] for row in per_seed.values()]
            cells.append(f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f} "
                         f"({min(values):.4f}-{max(values):.4f})")
        minutes = [row["train_seconds"] / 60 for row in per_seed.values()]
        rows.append(f"| mean ± std (min-max) | {' | '.join(cells)} | | "
                    f"{statistics.fmean(minutes):.1f} (max {max(minutes):.1f}) |")
    return f"""
### Across seeds
The same command with `--seed` {", ".join(map(str, per_seed))} (the table above is
seed {next(iter(per_seed))}), test split, {len(per_seed)} runs trained two at a time on
the 2 cores (each on one thread), so each time is that of a run sharing the machine.

| seed | {" | ".join(names)} | epochs | train min |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def render(results: dict, config: dict, command: str, per_seed: dict[int, dict]) -> str:
    """The QUALITY.md text; targets on the mean over `per_seed` (seed -> run row)."""
    meta = config["meta"]
    rows = []
    for name, protocols in results["results"].items():
        full, sampled = protocols["full"], protocols["sampled"]
        rows.append(f"| {name} | {full['HR@10']:.4f} | {full['NDCG@10']:.4f} | "
                    f"{full['MRR']:.4f} | {sampled['HR@10']:.4f} | {sampled['NDCG@10']:.4f} |")
    rows.append(f"| SASRec paper (Kang & McAuley 2018) | – | – | – | {PAPER['HR@10']:.4f} | "
                f"{PAPER['NDCG@10']:.4f} |")
    model = config["model"]
    train = meta["train_config"]
    data = meta["data"]
    loss_text = "full softmax cross-entropy over all items on every position"
    if train["loss"] == "sampled":
        loss_text = (f"sampled softmax cross-entropy on every position, {train['num_negatives']} "
                     f"shared negatives drawn by count^{train['negative_power']}, log-q corrected")
    if train.get("item_init") == "cooccurrence":
        loss_text += ("; item table started from the PPMI SVD of co-occurrences "
                      f"(window {train['item_init_window']}, entry std {train['item_init_std']})")
    if train.get("ema_decay"):
        loss_text += f"; weights averaged (EMA {train['ema_decay']})"
    if train.get("bce_weight"):
        loss_text += (f", plus {train['bce_weight']} x the paper's binary loss against "
                      f"{train['bce_negatives']} uniform items")
    sasrec = results["results"]["sasrec"]
    best_baseline = max(v["full"]["NDCG@10"] for k, v in results["results"].items()
                        if k != "sasrec")
    runs = list(per_seed.values()) or [{"full": sasrec["full"], "sampled": sasrec["sampled"],
                                        "train_seconds": results["train_seconds"]}]
    mean = {(a, b): statistics.fmean(r[a][b] for r in runs)
            for a in ("full", "sampled") for b in ("NDCG@10", "HR@10")}
    over = f"mean of {len(runs)} seeds" if len(runs) > 1 else "one seed"
    checks = [
        (f"full ranking NDCG@10 >= {TARGET_NDCG:.3f} ({over})",
         mean["full", "NDCG@10"] >= TARGET_NDCG),
        ("full ranking NDCG@10 above every baseline (every seed)",
         all(r["full"]["NDCG@10"] > best_baseline for r in runs)),
        ("sampled-100 NDCG@10 > 0.536 (paper; every seed)",
         all(r["sampled"]["NDCG@10"] > PAPER["NDCG@10"] for r in runs)),
        ("sampled-100 HR@10 > 0.741 (paper; every seed)",
         all(r["sampled"]["HR@10"] > PAPER["HR@10"] for r in runs)),
        ("training within 15 minutes (every seed)",
         all(r["train_seconds"] <= 900 for r in runs)),
    ]
    targets = "\n".join(f"- {'met' if ok else '**not met**'}: {text}" for text, ok in checks)
    missed = [text for text, ok in checks if not ok]
    verdict = ("the model meets every target." if not missed
               else f"the model misses {len(missed)} target(s): {'; '.join(missed)}.")
    window = train.get("item_init_window", 0)
    fit = bool(train.get("fit_validation"))
    fit_note = (" together with the validation item (`fit_validation`: every user's items "
                "but the test one; the baselines too)") if fit else ""
    minutes = f"**{results['train_seconds'] / 60:.1f} min**"
    stopping = (f"- No early stopping (the validation items are trained on): "
                f"{train['epochs']} epochs, the last one's averaged weights kept; budget "
                f"{train['max_minutes']} min.\n- Ran {results['epochs']} epochs in {minutes} "
                f"({results['stopped']}).") if fit else (
        f"- Early stopping on validation NDCG@10 (full ranking"
        f"{f', {train_eval:,} fixed random users' if (train_eval := train['eval_users']) else ''}"
        f"), patience {train['patience']}, budget {train['max_minutes']} min.\n"
        f"- Ran {results['epochs']} epochs in {minutes} ({results['stopped']}); best epoch "
        f"{results['best_epoch']} (validation NDCG@10 {results['best_val_ndcg@10']:.4f}). "
        "Wall time includes every validation pass.")
    return f"""# Encoder quality on Amazon Games

Regenerate with `python benchmarks/quality_games.py` (it runs the command below, then
rewrites this file and `quality_curve.png`).

```
{command}
```

## Data and protocol
- `../shared/data/games.txt`: Amazon Video Games as preprocessed for the SASRec paper,
  {data['users']:,} users, {data['items']:,} items, {data['interactions']:,} interactions.
- Leave-one-out: each user's last item is the test item, the second-to-last validates
  (early stopping), the rest trains{fit_note}. Users with fewer than 3 interactions are
  trained on, not evaluated ({results['users_evaluated']:,} users evaluated).
- Full ranking: the test item against every item except the user's history items
  (what the worker serves); ties count against the model.
- Sampled-100: the test item against 100 items the user never interacted with, drawn
  uniformly (the paper's protocol; for comparison with published numbers only).
- Baselines are fitted on the same training part: most-popular, last-item transition,
  and a windowed co-occurrence (last 3 items, decayed).

## Results (test split)

| model | full HR@10 | full NDCG@10 | full MRR | sampled HR@10 | sampled NDCG@10 |
|---|---|---|---|---|---|
{chr(10).join(rows)}
{render_seeds(per_seed) if len(per_seed) > 1 else ""}
## Targets of the quality issue
{targets}

Reading the table: {verdict} Full ranking is
{sasrec['full']['NDCG@10'] / best_baseline - 1:.0%} above the best baseline. What got it
there (runs 13-36 below): the item table starts from the positive PMI of items bought
within {window} positions of each other, factorised by a truncated SVD, instead of at
random. Rarely seen items then start next to the items they are bought with; a random
start left them near where they began, and sampled-100, which ranks the target against
100 mostly rare items, could not pass ~0.72 whatever the loss (runs 13-25). With that
start the model is good after a few epochs; it trains {train['epochs']} epochs with the
rate decayed linearly to 0, averages the weights (EMA {train.get('ema_decay', 0)}) and
regularises (dropout {model['dropout']}, weight decay {train['weight_decay']}). The
recipe ablation below (3 seeds, validation only) set the last two choices: 16 epochs
instead of 8, and training on each user's second-to-last item as well
(`fit_validation`, measured with the test items removed: the "shifted-" rows), since
a deployed model should learn every interaction it is given; the other knobs did not
add to them. d 128 gained more on validation than any d-64 change (+0.0050) but
serves at 0.52-0.61x the users/s of d 64 (`bench model --against`, batches 64-1024,
2026-12-03, a training run on the other core), so it stays a flag (`--hidden 128`).
Validation NDCG@10 runs above test: the test item is the later, harder one (the
baselines drop the same way).

## Training
- Model: {model['blocks']} blocks, {model['heads']} head(s), hidden {model['hidden']},
  feed-forward x{model['ffn_mult']}, max history {model['max_len']}, dropout
  {model['dropout']} (embeddings {model['emb_dropout']}), init std {model['init_std']},
  tied item embeddings ({model['num_items']:,} + 1 rows).
- Loss: {loss_text}; AdamW lr {train['lr']} ({train.get('lr_schedule', 'constant')} after
  warm-up), weight decay {train['weight_decay']}, warm-up {train['warmup_steps']} steps,
  clip {train['grad_clip']},
  batch {train['batch_size']} users (length-bucketed, padding trimmed), seed {train['seed']}.
{stopping}
- Machine: {machine()}; training times on this shared machine move with what else runs on it
  (the seeds' table says how the runs shared it).
- GPU: not measured yet (no GPU was lent to the sessions that made these figures; CUDA
  trains with bf16 autocast and torch.compile, see `encoder/losses.py`).

![{"training loss" if fit else "validation NDCG@10"} by epoch](quality_curve.png)

{TUNING}"""
