"""`streamrec train`: train the encoder on an interaction log and write a checkpoint.

Reads the log, picks hyper-parameters (a preset, then any flags on top), trains
with early stopping on the validation items, writes the checkpoint directory the
worker serves, and prints the test-split table: the model beside the most-popular,
transition and co-occurrence baselines, full ranking and sampled-100. `--warm-start`
trains from a previous version's weights instead (`encoder/warmstart.py`) for a few
epochs. `--item-features` adds a content tower (`encoder/content.py`) so that items
are also known by their features, and items without interactions by those alone.
Library code gets typed configs, never this namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.cli.flags import (
    add_data_flags,
    add_index_flags,
    add_item_feature_flags,
    ann_from_args,
    content_overrides,
    load_data,
    parse_duration,
    parse_event_types,
)
from streamrec.cli.index import attach_index
from streamrec.common.errors import ConfigError, StreamrecError
from streamrec.common.settings import env_default

if TYPE_CHECKING:
    from collections.abc import Mapping

    from streamrec.encoder.checkpoint import Checkpoint
    from streamrec.encoder.config import ModelConfig, TrainConfig
    from streamrec.encoder.data import Interactions
    from streamrec.encoder.features import ItemFeatures
    from streamrec.encoder.split import EvalCases
    from streamrec.encoder.train import TrainResult

logger = logging.getLogger(__name__)

# Epochs of a --warm-start run unless --epochs is given. Measured on Amazon Games
# (docs/QUALITY.md, "Warm-started retrain vs full retrain"): from a version trained without
# each user's last 2 items, 1 / 2 / 3 epochs on the full log reached 87% / 93% / 96% of a
# full retrain's full-ranking NDCG@10 in 10-13% / 21-26% / 31-39% of its training time
# (two runs); 3 keeps sampled-100 HR@10 within 1% of the full retrain.
WARM_START_EPOCHS = 3
QUERY_SAMPLE = 2000  # validation queries stored for the worker's index recall check
CURRENT_OF_OUT = ""  # --warm-start without a value: the current version of --out

# flag -> (config field, type, help); None defaults mean "the preset's value".
MODEL_FLAGS = {
    "--max-len": ("max_len", int, "history length L the model reads"),
    "--hidden": ("hidden", int, "embedding / hidden size d"),
    "--blocks": ("blocks", int, "transformer blocks"),
    "--heads": ("heads", int, "attention heads"),
    "--dropout": ("dropout", float, "dropout in the blocks"),
    "--emb-dropout": ("emb_dropout", float, "dropout on the input embeddings"),
}
TRAIN_FLAGS = {
    "--epochs": ("epochs", int, "most epochs (early stopping usually ends sooner; "
                                f"{WARM_START_EPOCHS} with --warm-start)"),
    "--batch-size": ("batch_size", int, "users per step"),
    "--lr": ("lr", float, "AdamW peak learning rate"),
    "--weight-decay": ("weight_decay", float, "AdamW weight decay"),
    "--loss": ("loss", str, "softmax over all items (full) or shared negatives (sampled)"),
    "--negatives": ("num_negatives", int, "shared negatives per step (sampled loss)"),
    "--item-init": ("item_init", str, "item table start: random, or cooccurrence (PPMI SVD)"),
    "--ema-decay": ("ema_decay", float, "keep a moving average of the weights (0 = off)"),
    "--patience": ("patience", int, "evaluations without improvement before stopping"),
    "--max-minutes": ("max_minutes", float, "training time budget in minutes (0 = none)"),
    "--eval-users": ("eval_users", int, "validate on this many users (0 = all)"),
    "--seed": ("seed", int, "random seed"),
    "--threads": ("threads", int, "torch CPU threads (0 = torch default)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec train`."""
    from streamrec.encoder.config import CHOICES, PRESETS

    p = sub.add_parser(
        "train", help="train the encoder and write a checkpoint",
        description="Train the attention encoder on an interaction log (leave-one-out: the "
                    "last item of each user is the test item, the one before it validates), "
                    "write a checkpoint directory and print model vs baselines. Every flag "
                    "can also be set as STREAMREC_<FLAG>.")
    add_data_flags(p, from_topic=True)
    p.add_argument("--out", required=True, type=Path,
                   help="checkpoint directory to write, or a model repository (see --repo)")
    p.add_argument("--repo", action="store_true",
                   help="--out is a model repository (created if missing): train into a new "
                        "version and make it the current one atomically, so workers given "
                        "the repository as --model serve it; implied when --out has a "
                        "CURRENT file")
    p.add_argument("--preset", choices=PRESETS, default=env_default("--preset", "auto"),
                   help="hyper-parameter defaults: auto (from data size), demo, games "
                        "(default %(default)s); the flags below override them")
    for flags in (MODEL_FLAGS, TRAIN_FLAGS):
        for flag, (name, kind, text) in flags.items():
            p.add_argument(flag, type=kind, default=env_default(flag, None, kind),
                           choices=CHOICES.get(name),
                           help=f"{text} (default: the preset's)")
    p.add_argument("--device", default=env_default("--device", "auto"),
                   help="torch device: auto, cpu, cuda, cuda:1 (default %(default)s)")
    add_item_feature_flags(p)
    p.add_argument("--warm-start", nargs="?", const=CURRENT_OF_OUT, metavar="CHECKPOINT_OR_REPO",
                   default=env_default("--warm-start", None),
                   help="start from a trained model instead of from scratch: its weights, the "
                        "item table grown by the items only the new data has (placed among "
                        "the trained items they co-occur with); architecture flags must match "
                        f"it. Trains {WARM_START_EPOCHS} epochs unless --epochs is given. "
                        "Without a value: the current version of the --out repository (the "
                        "first run into a new --repo trains from scratch; with --follow each "
                        "run starts from the then-current version)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose state is under --out")
    p.add_argument("--follow", action="store_true",
                   help="keep retraining into the model repository (--out REPO): a run now, "
                        "then one every --every; a failed run is logged and the next one "
                        "tried; SIGTERM stops after the run in progress (for one box; a cron "
                        "line or CronJob does the same)")
    p.add_argument("--every", default="1h",
                   help="with --follow: the time between runs' starts (default %(default)s)")
    add_index_flags(p)  # an approximate choice is built and stored with the checkpoint
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=run)


def load_training_data(args: argparse.Namespace) -> Interactions:
    """The interactions to train on. The one place a new source (e.g. a topic) plugs in."""
    return load_data(args)


def build_configs(
    data: Interactions, preset_name: str, overrides: dict[str, Any] | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """The preset's configs for `data` with `overrides` (field -> value) applied."""
    from streamrec.encoder.config import ModelConfig, TrainConfig, preset

    model_config, train_config = preset(preset_name, data.num_items, data.num_users,
                                        data.num_interactions)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - model_fields - train_fields)
    if unknown:
        raise ConfigError(f"unknown hyper-parameters {unknown}")
    model_config = dataclasses.replace(
        model_config, **{k: v for k, v in overrides.items() if k in model_fields})
    train_config = dataclasses.replace(
        train_config, **{k: v for k, v in overrides.items() if k in train_fields})
    return model_config, train_config


def train_and_save(
    data: Path | Interactions,
    fmt: str,
    out: Path,
    *,
    preset_name: str = "auto",
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    warm_start: Checkpoint | None = None,
    item_features: Mapping[str, ItemFeatures] | None = None,
    content_overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Load `data` (a path in format `fmt`, or loaded interactions), train, save to `out`.

    With `warm_start` (a previous version) training starts from its weights: `data`
    must already be on its grown vocabulary (`warmstart.grow_interactions`), the
    model config is the old one, and the preset supplies the training config.
    `item_features` add a content tower shaped by `content_overrides` (ContentConfig
    fields; a warm start keeps its tower and grows its features with them).
    """
    from streamrec.encoder.config import ContentConfig
    from streamrec.encoder.data import Interactions, load_interactions
    from streamrec.encoder.train import train_model
    from streamrec.encoder.warmstart import warm_model_config
    from streamrec.encoder.warmstart import warm_start as grown_model

    interactions = data if isinstance(data, Interactions) else load_interactions(data, fmt)
    model_config, train_config = build_configs(interactions, preset_name, overrides)
    given = {k: v for k, v in (content_overrides or {}).items() if v is not None}
    initial, content = None, None
    if warm_start is not None:
        model_config = warm_model_config(warm_start.config, interactions.num_items, overrides)
        initial = grown_model(warm_start, interactions, model_config,
                              window=train_config.item_init_window, seed=train_config.seed,
                              item_features=item_features, content_overrides=given)
        item_features = None  # the warm start holds them now
    elif item_features is not None:
        content = ContentConfig(**given)
    elif given:
        raise ConfigError(f"{', '.join(sorted(given))} shape the content tower: give "
                          "--item-features FILE")
    logger.info("model %s", model_config)
    logger.info("training %s", train_config)
    return train_model(interactions, model_config, train_config, checkpoint_dir=out,
                       resume=resume, progress=progress, initial=initial,
                       item_features=item_features, content=content)


def run(args: argparse.Namespace) -> int:
    """One training run, or with --follow one every --every until SIGTERM/SIGINT."""
    if not args.follow:
        return run_once(args)
    from streamrec.encoder import distributed, repository

    if distributed.ranks_from_env().distributed:
        raise ConfigError("--follow runs in one process: under torchrun, start a launch per "
                          "run (a cron line or CronJob)")
    every = parse_duration(args.every, "--every")
    if not (args.repo or repository.is_repository(args.out)):
        raise ConfigError("--follow publishes each run into a model repository: give "
                          "--out REPO --repo (or an --out that has a CURRENT file)")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    while not stop.is_set():
        began = time.monotonic()
        try:
            run_once(args)
        except StreamrecError as exc:  # the next run may well work (broker back, data in)
            logger.error("training run failed: %s; next run in %s", exc, args.every)
        stop.wait(max(0.0, every - (time.monotonic() - began)))
    return 0


def run_once(args: argparse.Namespace) -> int:
    """Load, train, save (or publish into a repository), print the test table."""
    from streamrec.encoder import distributed, repository

    started = time.perf_counter()
    main = distributed.ranks_from_env().is_main  # under torchrun only process 0 writes
    repo = args.out if args.repo or repository.is_repository(args.out) else None
    if repo is not None and args.resume:
        raise ConfigError("--resume continues a checkpoint directory, not a model repository")
    previous = _previous_version(args)  # before the data: a bad path fails fast
    features = None
    if args.item_features is not None:
        from streamrec.encoder.features import read_item_features

        features = read_item_features(args.item_features)
    data = load_training_data(args)
    if previous is not None:
        from streamrec.encoder.warmstart import grow_interactions

        data = grow_interactions(previous.vocab, data)
    out = repository.incoming(repo) if repo is not None and main else args.out
    try:
        done = _train_evaluate_save(args, data, out, started, previous, features)
    except BaseException:
        if repo is not None and main:
            repository.discard(out)  # a failed run leaves nothing behind in the repository
        raise
    if done is None:  # another process of a torchrun launch: process 0 reports
        return 0
    summary, table = done
    where = str(out)
    if repo is not None:
        version = json.loads((out / "config.json").read_text(encoding="utf-8"))["model_version"]
        where = f"{repository.publish(repo, out, version)} (now current in {repo})"
    if args.json:
        print(json.dumps(summary | {"checkpoint": where}, indent=2))
        return 0
    print(data.report.summary())
    if summary["warm_start"] is not None:
        warm = summary["warm_start"]
        print(f"warm-started from {warm['from_model_version']}: {warm['old_items']:,} items "
              f"kept, {warm['new_items']:,} new")
    if summary["content"] is not None:
        content = summary["content"]
        print(f"content tower: {content['items_with_features']:,} of {data.num_items:,} "
              f"items have features, {content.get('items_read_by_tower', 0):,} that it reads "
              f"(feature vocabulary: {content.get('vocabulary_buckets', 0):,} buckets)")
    print(f"trained {summary['epochs']} epochs in {summary['train_seconds']:.0f}s "
          f"({summary['stopped']}); best epoch {summary['best_epoch']}, validation NDCG@10 "
          f"{summary['best_val_ndcg@10']:.4f}; checkpoint {where}")
    print(table)
    return 0


def _previous_version(args: argparse.Namespace) -> Checkpoint | None:
    """The checkpoint `--warm-start` names (a bare flag: the --out repository's current
    version, read now, so each --follow run starts from the latest); None without it,
    and None for the first run into a new repository (`--repo`, no version yet), so one
    cron line or CronJob serves from the first run on."""
    if args.warm_start is None:
        return None
    from streamrec.encoder import repository
    from streamrec.encoder.checkpoint import load_checkpoint
    from streamrec.encoder.warmstart import warm_model_config

    source = Path(args.warm_start) if args.warm_start != CURRENT_OF_OUT else args.out
    if args.warm_start == CURRENT_OF_OUT and not repository.is_repository(args.out):
        if not args.repo:
            raise ConfigError(f"--warm-start without a value starts from the current version "
                              f"of the --out model repository, and {args.out} is none: give "
                              "--out REPO --repo, or name a checkpoint (--warm-start PATH)")
        logger.warning("%s has no current version yet: this run trains from scratch, later "
                       "runs warm-start from the version it publishes", args.out)
        return None
    previous = load_checkpoint(source)
    # Contradicting architecture flags fail now, before a long read of the data.
    warm_model_config(previous.config, previous.config.num_items, _overrides(args))
    return previous


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config field -> flag value (None = not given) of the model and training flags."""
    overrides: dict[str, Any] = {"device": args.device}
    for flags in (MODEL_FLAGS, TRAIN_FLAGS):
        for flag, (name, _, _) in flags.items():
            overrides[name] = getattr(args, flag.lstrip("-").replace("-", "_"))
    return overrides


def validation_queries(model: Any, cases: EvalCases, device: Any,
                       sample: int = QUERY_SAMPLE) -> np.ndarray:
    """The model's query vectors for up to `sample` validation histories (seeded
    choice): stored with the checkpoint for the worker's index recall check."""
    from streamrec.encoder.evaluate import ModelScorer
    from streamrec.encoder.sequences import pad_histories

    pick = np.random.default_rng(0).permutation(len(cases))[:sample]
    histories = pad_histories([cases.histories[i] for i in np.sort(pick)],
                              model.config.max_len)
    return ModelScorer(model, device=device).queries(histories)


def _train_evaluate_save(args: argparse.Namespace, data: Interactions, out: Path,
                         started: float, previous: Checkpoint | None,
                         features: Mapping[str, ItemFeatures] | None,
                         ) -> tuple[dict[str, Any], str] | None:
    """Train into `out`, evaluate on the test items, save; (summary, printable table),
    or None on the processes of a torchrun launch other than process 0."""
    from streamrec.encoder.baselines import fit_baselines
    from streamrec.encoder.checkpoint import save_checkpoint
    from streamrec.encoder.evaluate import ModelScorer, evaluate_scorers
    from streamrec.encoder.report import format_table, results_to_dict
    from streamrec.encoder.split import leave_one_out

    overrides = _overrides(args)
    if previous is not None and overrides["epochs"] is None:
        overrides["epochs"] = WARM_START_EPOCHS
    progress = not args.no_progress and sys.stderr.isatty()
    result = train_and_save(data, args.format, out, preset_name=args.preset,
                            overrides=overrides, resume=args.resume, progress=progress,
                            warm_start=previous, item_features=features,
                            content_overrides=content_overrides(args))
    if not result.main:
        return None
    split = leave_one_out(data)
    device = next(result.model.parameters()).device
    scorers: dict[str, Any] = {"sasrec": ModelScorer(result.model, device=device)}
    scorers.update(fit_baselines(split.train, data.num_items))
    results = evaluate_scorers(scorers, split.test, num_items=data.num_items,
                               progress=progress)
    summary = results_to_dict(results, {
        "split": "test", "users_evaluated": len(split.test),
        "train_seconds": result.wall_seconds, "best_epoch": result.best_epoch,
        "epochs": len(result.history), "stopped": result.stopped,
        "best_val_ndcg@10": result.best_val_ndcg10,
        "warm_start": result.meta.get("warm_start"),
        "content": result.meta.get("content"),
        "total_seconds": round(time.perf_counter() - started, 2),
        # What the model learnt from: serve it with the same --event-types.
        "event_types": sorted(parse_event_types(args.event_types) or []) or None,
        "data": data.report.as_dict(),
    })
    # Re-save with the test metrics in config.json (the weights and their hash are
    # unchanged) and a sample of validation queries, on which the worker measures an
    # approximate index; then that index, when --index comes out approximate.
    queries = validation_queries(result.model, split.validation, device)
    save_checkpoint(out, result.model.cpu(), data.vocab, data.item_counts(),
                    meta=result.meta | {"test": summary}, queries=queries)
    summary["index"] = attach_index(out, args.index, ann_from_args(args))
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary, format_table(results, notes=(
        f"test split, leave-one-out; {split.skipped_users:,} users with fewer than 3 "
        "interactions not evaluated",
        f"full: ranked against all {data.num_items:,} items minus the user's history; "
        "sampled: against 100 unseen items (SASRec paper protocol)",
    ))
