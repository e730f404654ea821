"""The `streamrec` command line: one entry point, one subcommand per job.

Each subcommand is a module of `streamrec.cli` with `register(subparsers)`; this
module lists them and runs the one chosen.
Errors streamrec raises on purpose (`StreamrecError`) are printed as one clear line
with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from streamrec.cli import (
    bench,
    broker,
    data,
    demo,
    evaluate,
    index,
    items,
    reload,
    replay,
    state,
    train,
    worker,
)
from streamrec.common.errors import StreamrecError

logger = logging.getLogger(__name__)

# Order here is the order `streamrec --help` lists them.
COMMANDS = (demo, broker, worker, reload, replay, items, data, train, index, evaluate, state,
            bench)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="streamrec",
        description="Real-time sequential recommendations from Kafka events.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen subcommand, return its exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except StreamrecError as exc:  # e.g. a bad STREAMREC_* value while building defaults
        print(f"streamrec: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.log_level != "DEBUG":
        # kafka-python logs every connection and rebalance step at INFO.
        logging.getLogger("kafka").setLevel(logging.WARNING)
        # Its event loop also warns whenever another thread holds the GIL for 100 ms.
        logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
        logging.getLogger("faiss").setLevel(logging.WARNING)  # CPU feature probing
        # librdkafka's own log lines (connection retries) come through this logger.
        logging.getLogger("streamrec.kafka_io.librdkafka").setLevel(logging.WARNING)
    try:
        if hasattr(args, "kafka_client"):  # every command that talks to Kafka
            from streamrec.kafka_io.clients import select_client

            select_client(args.kafka_client)
        return int(args.handler(args) or 0)
    except StreamrecError as exc:
        print(f"streamrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
