"""`streamrec evaluate`: a checkpoint against the baselines on a leave-one-out split.

Loads the checkpoint, reads the interaction log through the checkpoint's item
vocabulary (items the model does not know are dropped and counted), splits it
leave-one-out, fits the baselines on the training part of the same split and
ranks every user's held-out item with each scorer under both protocols. Prints
one table, or with `--json` one JSON document for machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from streamrec.cli.flags import add_data_flags, load_data
from streamrec.common.errors import ConfigError
from streamrec.common.settings import env_default

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec evaluate`."""
    p = sub.add_parser(
        "evaluate", help="evaluate a model against baselines (leave-one-out)",
        description="Leave-one-out evaluation of a checkpoint beside most-popular and "
                    "item-transition baselines: full ranking (HR/NDCG@10,20, MRR) and the "
                    "sampled-100 protocol of the SASRec paper.",
    )
    p.add_argument("--model", required=True, type=Path, help="checkpoint directory")
    add_data_flags(p, from_topic=True)
    p.add_argument("--min-interactions", type=int, default=3,
                   help="users with fewer interactions are not evaluated (default %(default)s)")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="held-out item to rank: last (test) or second-to-last (validation)")
    p.add_argument("--no-baselines", action="store_true", help="evaluate the model only")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--device", default=env_default("--device", "auto"),
                   help="torch device: auto, cpu, cuda, cuda:1 (env STREAMREC_DEVICE; "
                        "default %(default)s)")
    p.add_argument("--batch-size", type=int, default=512, help="users per scoring batch")
    p.add_argument("--num-negatives", type=int, default=100,
                   help="negatives per user in the sampled protocol (default %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of the sampled negatives")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load, split, score, print."""

    from streamrec.common.devices import resolve_device
    from streamrec.encoder.baselines import fit_baselines
    from streamrec.encoder.checkpoint import load_checkpoint
    from streamrec.encoder.evaluate import ModelScorer, evaluate_scorers
    from streamrec.encoder.report import format_table, results_to_dict
    from streamrec.encoder.split import leave_one_out

    if args.batch_size < 1 or args.num_negatives < 1:
        raise ConfigError("--batch-size and --num-negatives must be >= 1")
    device = str(resolve_device(args.device))
    started = time.perf_counter()
    checkpoint = load_checkpoint(args.model, device=device)
    data = load_data(args, vocab=checkpoint.vocab)
    split = leave_one_out(data, args.min_interactions)
    cases = split.test if args.split == "test" else split.validation
    if len(cases) == 0:
        raise ConfigError(
            f"no user in {args.data or args.from_topic} has {args.min_interactions} or more "
            "interactions with "
            "items the model knows; nothing to evaluate"
        )
    num_items = len(checkpoint.vocab)
    scorers: dict[str, Any] = {
        checkpoint.model_version: ModelScorer(
            checkpoint.model, device=device, max_len=checkpoint.config.max_len
        )
    }
    if not args.no_baselines:
        scorers.update(fit_baselines(split.train, num_items))
    results = evaluate_scorers(
        scorers, cases, num_items=num_items, batch_size=args.batch_size,
        num_negatives=args.num_negatives, seed=args.seed, progress=sys.stderr.isatty(),
    )
    meta = {
        "model": str(args.model), "model_version": checkpoint.model_version,
        "data": data.report.as_dict(), "split": args.split,
        "min_interactions": args.min_interactions, "users_evaluated": len(cases),
        "users_skipped": split.skipped_users, "num_items": num_items,
        "num_negatives": args.num_negatives, "seed": args.seed,
        "ties": "pessimistic", "seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        print(json.dumps(results_to_dict(results, meta), indent=2))
        return 0
    print(data.report.summary())
    print(format_table(results, notes=(
        f"{args.split} split, leave-one-out; {split.skipped_users:,} users with fewer than "
        f"{args.min_interactions} interactions not evaluated",
        f"full: ranked against all {num_items:,} items minus the user's history; sampled: "
        f"against {args.num_negatives} unseen items (seed {args.seed}), for comparison with "
        "the SASRec paper only",
        f"baselines fitted on this split's training part; {meta['seconds']:.1f}s",
    )))
    return 0
