"""`streamrec index build`: build an approximate item index and store it in a checkpoint.

`streamrec train` does this for every checkpoint it writes whose `--index` (auto by
default) comes out approximate; this command adds or replaces the index of an
existing checkpoint, e.g. to try other parameters. The worker then reads the stored
index at load instead of training a quantizer on its loader thread
(index/store.py); its recall@10 against exact search, measured here on the
checkpoint's stored validation queries, is written beside it, with those queries'
exact top 10 (so a loader measures recall without scoring every item again). Without
an asked `--nprobe`, an IVF index searches the fewest lists (16, then 1.25 times as
many a step) whose recall@10 there reaches 0.95, and stores that choice.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from streamrec.cli.flags import add_index_flags, ann_from_args
from streamrec.common.errors import ConfigError
from streamrec.index.params import AnnParams

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec index build`."""
    p = sub.add_parser("index", help="build and store an approximate item index",
                       description=__doc__.split("\n\n")[0])
    actions = p.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build", help="build an approximate index into a checkpoint directory",
        description="Build the item index --index names over a checkpoint's item table, "
                    "measure its recall@10 against exact search on the checkpoint's "
                    "validation queries, and store it in the checkpoint (index.faiss, "
                    "index.json, listed in config.json).")
    build.add_argument("--model", required=True, type=Path,
                       help="checkpoint directory, or a model repository (its current "
                            "version)")
    add_index_flags(build, "ivf-sq8")
    build.add_argument("--threads", type=int, default=0,
                       help="CPU threads for building (0 = every core)")
    build.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build, measure and store; print what was stored."""
    from streamrec.index.build import APPROXIMATE_KINDS

    if args.index not in APPROXIMATE_KINDS:
        raise ConfigError(f"--index {args.index} is exact: nothing to build and store (choose "
                          f"one of {', '.join(APPROXIMATE_KINDS)})")
    stored = attach_index(args.model, args.index, ann_from_args(args), args.threads)
    print(json.dumps(stored, indent=2))
    return 0


def attach_index(model_dir: Path, backend: str, params: AnnParams, threads: int = 0,
                 ) -> dict[str, Any] | None:
    """Build the index `backend` names for the checkpoint at `model_dir` (auto: as the
    worker would choose it), measure it, store it; index.json's fields, or None when
    the choice is built in a moment at load (exact, or `torch-bf16`): nothing to store."""
    from streamrec.encoder.checkpoint import attach_files
    from streamrec.index.store import META_FILE, index_files
    from streamrec.worker.recommend import Recommender

    served = Recommender.load(model_dir, device="cpu", backend=backend, threads=threads,
                              ann=params, min_recall=None)
    if not served.index.stored:
        return None
    with_table = served.checkpoint.model.item_embeddings().detach().float().numpy()
    served.index.truth = None  # measured anew against exact search, on every sample query
    recall = served.measure_recall(with_table, 0.0, every_query=True)
    truth = served.recall.truth if served.recall is not None else None
    files = index_files(served.index, with_table, recall, truth)  # type: ignore[arg-type]
    attach_files(served.checkpoint.path, files)
    meta = json.loads(files[META_FILE])
    logger.info("stored a %s index in %s: recall@10 %s", meta["kind"], served.checkpoint.path,
                meta["recall_at_10"])
    return meta
