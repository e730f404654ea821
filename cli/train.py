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
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamrec.cli.flags import (
    add_data_flags,
    add_index_flags,
    add_item_feature_flags,
    add_override_flag,
    load_data,
    parse_duration,
)
from streamrec.cli.train_evaluate import WARM_START_EPOCHS, train_evaluate_save
from streamrec.common.errors import ConfigError, StreamrecError
from streamrec.common.settings import env_default

if TYPE_CHECKING:
    from streamrec.encoder.checkpoint import Checkpoint
    from streamrec.encoder.data import Interactions

logger = logging.getLogger(__name__)

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
    "--fit-validation": ("fit_validation", bool,
                         "also train on each user's validation item, so the model learns "
                         "all but the test item: fixed epochs, the last weights kept, no "
                         "validation figures (--no-fit-validation: hold it out, early-stop)"),
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
            add_override_flag(p, flag, kind, f"{text} (default: the preset's)",
                              CHOICES.get(name))
    p.add_argument("--device", default=env_default("--device", "auto"),
                   help="torch device: auto, cpu, cuda, cuda:1 (default %(default)s)")
    add_item_feature_flags(p)
    p.add_argument("--warm-start", nargs="?", const=CURRENT_OF_OUT, metavar="CHECKPOINT_OR_REPO",
                   default=env_default("--warm-start", None),
                   help="start from a trained model instead of from scratch: its weights, the "
                        "item table grown by the items only the new data has (placed among "
                        "the trained items they co-occur with); architecture flags must match "
                        f"it. Trains {WARM_START_EPOCHS} epochs unless --epochs is given, at the "
                        "recipe's warm-start rate (the games recipe's: twice its --lr) unless "
                        "--lr is given. "
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
        done = train_evaluate_save(args, data, out, started, previous, features,
                                   _overrides(args))
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
    kept = ("validation items trained on (--fit-validation), last epoch kept"
            if summary["best_val_ndcg@10"] is None else
            f"best epoch {summary['best_epoch']}, validation NDCG@10 "
            f"{summary['best_val_ndcg@10']:.4f}")
    print(f"trained {summary['epochs']} epochs in {summary['train_seconds']:.0f}s "
          f"({summary['stopped']}); {kept}; checkpoint {where}")
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

