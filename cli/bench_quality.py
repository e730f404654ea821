"""`streamrec bench {compress,cold,ablation}`: the benches whose sections go to docs/QUALITY.md.

Quality is measured by training and evaluating models (quantized and pruned variants,
the content tower on cold items, the training recipe over seeds); the figures are
written beside the test tables, not into docs/BENCHMARKS.md's speed runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamrec.cli.flags import int_list


def register(actions: argparse._SubParsersAction) -> None:
    """Add the quality benches to `streamrec bench`'s actions."""
    compress = actions.add_parser(
        "compress", help="quantization and pruning of the games model: speed, memory, NDCG",
        description="The games model with one lever pulled (item table in bf16 / fp16, alone "
                    "or re-scored in fp32, SQ8 / PQ / IVF, encoder in bf16 or int8, a block "
                    "dropped with and without a fine-tune, FFN magnitude pruning): model-stage "
                    "users/s at 1 and 2 threads "
                    "and batches 64 / 256 / 1024 against float32 exact, memory, and full-ranking "
                    "HR@10 / NDCG@10 on the games test split. Needs ../shared/data/games.txt.")
    from streamrec.bench.compress import CompressOptions

    c0 = CompressOptions()
    compress.add_argument("--model", type=Path, default=None,
                          help="checkpoint (default: the games preset, trained once)")
    compress.add_argument("--batches", default=",".join(map(str, c0.batches)),
                          help="batch sizes (default %(default)s)")
    compress.add_argument("--rounds", type=int, default=c0.rounds,
                          help="interleaved speed rounds, best kept (default %(default)s)")
    compress.add_argument("--seconds", type=float, default=c0.seconds,
                          help="time per speed measurement (default %(default)s)")
    compress.add_argument("--finetune-epochs", type=int, default=c0.finetune_epochs,
                          help="epochs of the pruned model's fine-tune (default %(default)s)")
    compress.add_argument("--only", default="",
                          help="comma-separated parts of variant names: measure only those "
                               "(and float32 exact), e.g. 'rescoring,IVF'; the run's table "
                               "goes to docs/BENCHMARKS.md only, QUALITY.md keeps the table of "
                               "every lever (default: all)")
    compress.set_defaults(handler=run_compress)

    cold = actions.add_parser(
        "cold", help="item cold start on MovieLens: content tower vs baselines",
        description="Hold 15% of the items out of training, then rank them on the test "
                    "cases whose target is one: the model with a content tower against (a) "
                    "random cold items, (b) popular items of the user's recent categories, "
                    "(c) content neighbours, (d) content neighbours among the cold items; "
                    "on warm targets the model with features against the one without. "
                    "Needs a folder from `streamrec data movielens` (docs/QUALITY.md, "
                    "'Item cold start'). Writes docs/bench/cold-items.json and that section.")
    from streamrec.bench.cold_options import ColdOptions

    c1 = ColdOptions()
    cold.add_argument("--data", type=Path, default=c1.data,
                      help="converted MovieLens folder (default %(default)s)")
    cold.add_argument("--data-note", default=c1.data_note,
                      help="where the folder's files came from, quoted in the report "
                           "(e.g. a copy other than GroupLens' archive)")
    cold.add_argument("--fraction", type=float, default=c1.fraction,
                      help="share of the items held out (default %(default)s)")
    cold.add_argument("--seed", type=int, default=c1.seed,
                      help="which items are held out, and the training seed (default "
                           "%(default)s)")
    cold.add_argument("--targets-per-user", type=int, default=c1.targets_per_user,
                      help="cold test cases per user, the last ones (default %(default)s: all)")
    cold.add_argument("--minutes", type=float, default=c1.minutes,
                      help="training budget per model (default %(default)s)")
    cold.add_argument("--repeats", type=int, default=c1.repeats,
                      help="models of each kind, trained with seeds --seed, --seed + 1, ...: "
                           "the figures are their means (default %(default)s)")
    cold.add_argument("--baselines-only", action="store_true",
                      help="evaluate the baselines, train no model")
    cold.add_argument("--ablation", action="store_true",
                      help="instead: train a tower of each setting of the ablation "
                           "(benchmarks/cold_ablation.py) --repeats times; tune on another "
                           "--seed than the reported 42. Writes docs/bench/cold-ablation.json")
    cold.add_argument("--no-report", action="store_true",
                      help="print the figures, leave docs/ alone (a trial run)")
    cold.set_defaults(handler=run_cold)
    _register_ablation(actions)


def _register_ablation(actions: argparse._SubParsersAction) -> None:
    """Add `bench ablation` (the games training recipe, one knob at a time, over seeds)."""
    from streamrec.bench.train_ablation import AblationOptions

    a = AblationOptions()
    p = actions.add_parser("ablation", help="the games training recipe, one knob at a time",
                           description="Train the games preset with each variant's change, "
                           "per seed, on the validation split only; runs are resumable "
                           "(.cache/bench/train-ablation.jsonl). Writes docs/bench/"
                           "train-ablation.json and its section of docs/QUALITY.md.")
    p.add_argument("--variants", default=",".join(a.variants), help="(default %(default)s)")
    p.add_argument("--seeds", default=",".join(map(str, a.seeds)), help="(default %(default)s)")
    p.add_argument("--parallel", type=int, default=a.parallel,
                   help="runs at a time, one process each (default %(default)s)")
    p.add_argument("--report-only", action="store_true", help="report the recorded runs")
    p.set_defaults(handler=run_ablation)


def run_ablation(args: argparse.Namespace) -> int:
    """Run `bench ablation`."""
    from streamrec.bench.train_ablation import AblationOptions, run

    run(AblationOptions(variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
                        seeds=int_list(args.seeds), parallel=args.parallel,
                        report_only=args.report_only))
    return 0


def run_compress(args: argparse.Namespace) -> int:
    """Run `bench compress`."""
    from streamrec.bench.compress import CompressOptions, run

    run(CompressOptions(model=args.model, batches=int_list(args.batches), rounds=args.rounds,
                        seconds=args.seconds, finetune_epochs=args.finetune_epochs,
                        only=tuple(part.strip() for part in args.only.split(",") if part.strip())))
    return 0


def run_cold(args: argparse.Namespace) -> int:
    """Run `bench cold`."""
    from streamrec.bench import cold_ablation, cold_items
    from streamrec.bench.cold_options import ColdOptions

    options = ColdOptions(
        data=args.data, data_note=args.data_note, fraction=args.fraction, seed=args.seed,
        targets_per_user=args.targets_per_user, minutes=args.minutes, repeats=args.repeats,
        models=not args.baselines_only, report=not args.no_report)
    (cold_ablation.run if args.ablation else cold_items.run)(options)
    return 0
