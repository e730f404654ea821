"""`streamrec replay`: produce a dataset's interactions as events, at a steady rate."""

from __future__ import annotations

import argparse

from streamrec.cli.flags import (
    add_data_flags,
    add_kafka_flags,
    add_replication_flag,
    load_data,
    security_from_args,
)
from streamrec.common.settings import env_default


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec replay`."""
    p = sub.add_parser("replay", help="produce a dataset as events",
                       description="Produce an interaction log's events to the events topic. "
                                   "Each user's order is kept; users are interleaved.")
    add_data_flags(p)
    add_kafka_flags(p)
    p.add_argument("--topic", default=env_default("--events-topic", "events"),
                   help="events topic (env STREAMREC_EVENTS_TOPIC; default %(default)s)")
    p.add_argument("--rate", type=float, default=100.0,
                   help="events per second, 0 = as fast as possible (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="stop after this many events")
    p.add_argument("--seed", type=int, default=0, help="interleaving seed")
    p.add_argument("--partitions", type=int, default=env_default("--partitions", 3),
                   help="partitions if the topic must be created (default %(default)s)")
    add_replication_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load, interleave and send."""
    from streamrec.eventlog.replay import interleave, replay
    from streamrec.kafka_io.clients import ensure_topics, make_producer

    security = security_from_args(args)
    interactions = load_data(args)
    total = interactions.num_interactions if args.limit is None else args.limit
    ensure_topics(args.bootstrap, {args.topic: args.partitions}, security=security,
                  replication_factor=args.replication_factor)
    producer = make_producer(args.bootstrap, "streamrec-replay", security)
    try:
        sent = replay(producer, args.topic, interleave(interactions, args.seed), args.rate,
                      args.limit, progress_total=total)
    finally:
        producer.close()
    print(f"replayed {sent} events to {args.topic} at {args.bootstrap}")
    return 0
