"""`streamrec data movielens`: a downloaded MovieLens folder into the files training reads.

The public datasets the quality benchmarks use come with licences that forbid
redistribution, so the project ships converters, not data: the operator downloads
the archive (docs/QUALITY.md, "Item cold start"), and this command writes the
interaction log and the item-features file into a folder of their choosing
(`.cache/` is git-ignored).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec data` and its actions."""
    p = sub.add_parser("data", help="convert public datasets into streamrec's files",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    movielens = actions.add_parser(
        "movielens", help="an ml-1m or ml-100k folder -> ratings + items.jsonl",
        description="Copy the ratings file (read as --format movielens) and write "
                    "items.jsonl: one {\"item_id\", \"features\": {\"categories\": genres "
                    "+ decade, \"text\": title}} a line, for --item-features and "
                    "`streamrec items publish`.")
    movielens.add_argument("--src", type=Path, required=True,
                           help="the unzipped folder (ml-1m: ratings.dat + movies.dat; "
                                "ml-100k: u.data + u.item)")
    movielens.add_argument("--out", type=Path, default=Path(".cache/movielens"),
                           help="where to write (default %(default)s)")
    movielens.set_defaults(handler=run_movielens)


def run_movielens(args: argparse.Namespace) -> int:
    """Convert and say what was written."""
    from streamrec.encoder.movielens import convert_movielens

    done = convert_movielens(args.src, args.out)
    print(f"{done.ratings}: {done.ratings_lines:,} ratings (--format movielens)\n"
          f"{done.items}: {done.movies:,} movies (--item-features)")
    return 0
