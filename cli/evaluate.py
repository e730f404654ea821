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

from streamrec.cli.flags import (
    add_data_flags,
    load_data,
    parse_event_types,
    parse_since,
    security_from_args,
)
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
    p.add_argument("--model", type=Path, help="checkpoint directory (not with --online)")
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
    online = p.add_argument_group(
        "online", "--online: the live quality of what was served, from the events and "
                  "recommendations topics (each event judged against the last recommendation "
                  "its user was sent before it), per model version; the worker exports the "
                  "same as streamrec_online_*_total.")
    online.add_argument("--online", action="store_true", help="evaluate what was served")
    online.add_argument("--events-topic", default=env_default("--events-topic", "events"),
                        help="(env STREAMREC_EVENTS_TOPIC; default %(default)s)")
    online.add_argument("--recommendations-topic",
                        default=env_default("--recommendations-topic", "recommendations"),
                        help="(env STREAMREC_RECOMMENDATIONS_TOPIC; default %(default)s)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load, split, score, print (or, with --online, judge what was served)."""
    if args.online:
        return run_online(args)
    if args.model is None:
        raise ConfigError("--model is required (a checkpoint directory), unless --online")

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


def run_online(args: argparse.Namespace) -> int:
    """Hit rate and NDCG of the recommendations served, per model version."""
    from streamrec.eventlog.online import online_quality
    from streamrec.worker.validate import now_ms

    if args.model is not None or args.data is not None or args.from_topic:
        raise ConfigError("--online reads the events and recommendations topics: it takes "
                          "no --model, --data or --from-topic")
    since = parse_since(args.since or "0", now_ms())  # --since from the data flags
    quality = online_quality(
        args.bootstrap, args.events_topic, args.recommendations_topic, since_ms=since,
        security=security_from_args(args), event_types=parse_event_types(args.event_types))
    rows = {version: {"judged": q.judged, "hits": q.hits, "k": q.k,
                      "hit_rate": round(q.hit_rate, 6), "ndcg": round(q.mean_ndcg, 6)}
            for version, q in sorted(quality.items())}
    if args.json:
        print(json.dumps({"since_ms": since, "events_topic": args.events_topic,
                          "recommendations_topic": args.recommendations_topic,
                          "versions": rows}, indent=2))
        return 0
    if not rows:
        print("no event was preceded by a recommendation to its user in that window")
        return 0
    print(f"{'model version':<32} {'judged':>9} {'HR@k':>8} {'NDCG@k':>8}  k")
    for version, row in rows.items():
        print(f"{version:<32} {row['judged']:>9,} {row['hit_rate']:>8.4f} {row['ndcg']:>8.4f}"
              f"  {row['k']}")
    return 0
