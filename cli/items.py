"""`streamrec items publish`: a catalogue file (JSON lines) into the items topic."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamrec.cli.flags import add_kafka_flags, add_replication_flag, env_flag, security_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec items publish`."""
    from streamrec.worker.config import WorkerConfig

    defaults = WorkerConfig(model_dir=Path("."))
    p = sub.add_parser("items", help="manage the item catalogue topic",
                       description="The compacted items topic every worker reads whole: "
                                   "retired items are never recommended.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    publish = actions.add_parser(
        "publish", help="publish a catalogue file (JSON lines) to the items topic",
        description='Publish item records, one JSON object a line: {"item_id": "x", '
                    '"available": true|false, "features": {"categories": [...], "text": '
                    '"...", "vector": [...]}} (all but item_id optional), or {"item_id": '
                    '"x", "retire": true} for a tombstone (retired, features forgotten). '
                    "Every line is checked first: a file with a bad line publishes nothing. "
                    'See docs/CONTRACTS.md, "Item".')
    publish.add_argument("--data", type=Path, required=True, help="catalogue file, JSON lines")
    add_kafka_flags(publish)
    env_flag(publish, "--items-topic", defaults.items_topic, "the items topic")
    env_flag(publish, "--partitions", defaults.partitions,
             "partitions if the topic must be created", int)
    add_replication_flag(publish)
    env_flag(publish, "--max-record-bytes", defaults.limits.max_record_bytes,
             "largest record accepted, as the workers' flag", int)
    env_flag(publish, "--max-id-chars", defaults.limits.max_id_chars,
             "longest item id accepted, as the workers' flag", int)
    publish.set_defaults(handler=run_publish)


def run_publish(args: argparse.Namespace) -> int:
    """Check the whole file, create the topic when missing, send, wait for every ack."""
    from streamrec.eventlog.items import publish_items, read_catalogue
    from streamrec.kafka_io.clients import ensure_topics, make_producer
    from streamrec.worker.item_records import ITEMS_TOPIC_CONFIG
    from streamrec.worker.validate import Limits

    catalogue = read_catalogue(args.data, Limits(max_record_bytes=args.max_record_bytes,
                                                 max_id_chars=args.max_id_chars))
    security = security_from_args(args)
    ensure_topics(args.bootstrap, {args.items_topic: args.partitions},
                  configs={args.items_topic: ITEMS_TOPIC_CONFIG}, security=security,
                  replication_factor=args.replication_factor)
    producer = make_producer(args.bootstrap, "streamrec-items", security)
    try:
        sent = publish_items(producer, args.items_topic, catalogue)
    finally:
        producer.close()
    print(f"published {sent} item records ({catalogue.retired} tombstones) to "
          f"{args.items_topic} at {args.bootstrap}")
    return 0
