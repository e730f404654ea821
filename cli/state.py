"""`streamrec state dump`: print the durable histories of a consumer group.

Operators (and tests that check state from outside the worker) read what a group's
workers would restore: the latest record per user of the group's histories
changelog, one JSON line per user, sorted by partition then user id.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from streamrec.cli.flags import add_kafka_flags, security_from_args
from streamrec.common.settings import env_default

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec state dump`."""
    p = sub.add_parser("state", help="inspect the workers' durable state",
                       description="Inspect the state the workers keep in Kafka.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    dump = actions.add_parser(
        "dump", help="print histories from the changelog as JSON lines",
        description="Print each user's latest history from the group's histories changelog "
                    "as one JSON line {user_id, partition, items, ts, offset}, sorted by "
                    "partition then user id.")
    add_kafka_flags(dump)
    dump.add_argument("--group-id", default=env_default("--group-id", "streamrec"),
                      help="consumer group whose changelog to read (env STREAMREC_GROUP_ID; "
                           "default %(default)s)")
    dump.add_argument("--user", default=None, help="print only this user id")
    dump.add_argument("--partition", type=int, action="append", default=None, metavar="N",
                      help="read only this changelog partition (repeatable; default: all)")
    dump.add_argument("--timeout", type=float, default=300.0,
                      help="longest the read may take, seconds (default %(default)s)")
    dump.set_defaults(handler=run_dump)


def run_dump(args: argparse.Namespace) -> int:
    """Read the changelog and print its histories."""
    from streamrec.kafka_io.access import authorization_error
    from streamrec.kafka_io.errors import KafkaUnavailableError, TopicNotFoundError
    from streamrec.kafka_io.security import principal_of
    from streamrec.kafka_io.topic_reader import partitions_of
    from streamrec.worker.state.changelog import changelog_topic
    from streamrec.worker.state.changelog_read import restore_partitions

    topic = changelog_topic(args.group_id)
    security = security_from_args(args)
    try:
        partitions = args.partition or partitions_of(args.bootstrap, topic, security=security)
        histories, stats = restore_partitions(args.bootstrap, args.group_id, partitions,
                                              security=security, timeout_s=args.timeout)
    except TopicNotFoundError as exc:  # or not visible: READ implies DESCRIBE
        raise TopicNotFoundError(
            f"{exc}: no histories changelog for group {args.group_id!r}; has a worker of "
            f"that group run with durable histories? (check --group-id; with ACLs, "
            f"{principal_of(security)} needs READ on topic {topic})") from exc
    except KafkaUnavailableError as exc:
        denied = authorization_error(exc, security, reads=[topic])
        if denied is None:
            raise
        raise denied from exc
    printed = 0
    for partition in sorted(histories):
        users = histories[partition]
        for user in sorted(users) if args.user is None else [args.user]:
            record = users.get(user)
            if record is None:
                continue
            line = {"user_id": user, "partition": partition, "items": list(record.items),
                    "ts": list(record.ts), "offset": record.offset}
            sys.stdout.write(json.dumps(line) + "\n")
            printed += 1
    sys.stdout.flush()
    logger.info("printed %d of %d users (%d changelog records, %d invalid)", printed,
                stats.users, stats.records, stats.invalid)
    return 0
