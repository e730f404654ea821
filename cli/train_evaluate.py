"""`streamrec train`'s run: configs from the preset and flags, training, the test table.

`train_and_save` trains into a checkpoint directory (the demo calls it too);
`train_evaluate_save` adds what the command prints and stores: the model beside the
baselines on the test split, the results and the validation queries the worker
measures an approximate index with. `train.py` holds the command's flags and loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.cli.flags import ann_from_args, content_overrides, parse_event_types
from streamrec.cli.index import attach_index
from streamrec.common.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from streamrec.encoder.checkpoint import Checkpoint
    from streamrec.encoder.config import ModelConfig, TrainConfig
    from streamrec.encoder.data import Interactions
    from streamrec.encoder.features import ItemFeatures
    from streamrec.encoder.split import EvalCases
    from streamrec.encoder.train import TrainResult

logger = logging.getLogger(__name__)

QUERY_SAMPLE = 2000  # validation queries stored for the worker's index recall check
# Epochs of a --warm-start run unless --epochs is given. Measured on Amazon Games
# (docs/QUALITY.md, "Warm-started retrain vs full retrain", the 16-epoch recipe): from a
# version trained without each user's last 2 items, 3 / 5 / 6 epochs on the full log
# reached 91% / 94% / 95% of a full retrain's full-ranking NDCG@10 in 19% / 29% / 34% of
# its training time; 5 is the most that stays well inside a third of it.
WARM_START_EPOCHS = 5


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
        if overrides.get("lr") is None:  # the recipe's rate for a warm start
            train_config = dataclasses.replace(
                train_config, lr=train_config.lr * train_config.warm_start_lr_scale)
        model_config = warm_model_config(warm_start.config, interactions.num_items, overrides)
        initial = grown_model(warm_start, interactions, model_config,
                              window=train_config.item_init_window, seed=train_config.seed,
                              fit_validation=train_config.fit_validation,
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


def train_evaluate_save(args: argparse.Namespace, data: Interactions, out: Path,
                        started: float, previous: Checkpoint | None,
                        features: Mapping[str, ItemFeatures] | None,
                        overrides: dict[str, Any],
                        ) -> tuple[dict[str, Any], str] | None:
    """Train into `out`, evaluate on the test items, save; (summary, printable table),
    or None on the processes of a torchrun launch other than process 0."""
    from streamrec.encoder.baselines import fit_baselines
    from streamrec.encoder.checkpoint import save_checkpoint
    from streamrec.encoder.evaluate import ModelScorer, evaluate_scorers
    from streamrec.encoder.report import format_table, results_to_dict
    from streamrec.encoder.split import leave_one_out

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
    if result.meta["train_config"]["fit_validation"]:  # the baselines learn as much
        split = split.with_validation_trained()
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
