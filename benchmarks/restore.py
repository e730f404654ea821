"""Measure how fast a worker restores histories from its changelog.

    python benchmarks/restore.py --users 200000 --history 50

Writes `--users` history records (each `--history` items long) to a fresh
compacted changelog topic, then times `restore_partitions` over all its partitions
(the read a worker does on assignment) and appends the figures, with the machine
named, to docs/BENCHMARKS.md. Uses the broker at $KAFKA_BOOTSTRAP, or starts the
project's local broker on free ports and stops it afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streamrec.kafka_io.clients import make_producer
from streamrec.kafka_io.local_broker import BrokerConfig, LocalBroker
from streamrec.worker.state.changelog import (
    HistoryRecord,
    changelog_topic,
    encode_history,
    restore_partitions,
)

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "BENCHMARKS.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill(bootstrap: str, group: str, users: int, history: int, partitions: int) -> float:
    """Create the changelog and write one record per user; returns seconds."""
    topic = changelog_topic(group)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1,
                                  topic_configs={"cleanup.policy": "compact"})])
    admin.wait_for_topics([topic], timeout_ms=60_000)
    admin.close()
    producer = make_producer(bootstrap, "bench-restore", linger_ms=20,
                             batch_size=256 * 1024, compression_type=None)
    start = time.perf_counter()
    base = 1_700_000_000_000
    for u in range(users):
        record = HistoryRecord(items=tuple(f"item-{(u + i) % 50_000}" for i in range(history)),
                               ts=tuple(base + i for i in range(history)), offset=u)
        producer.send(topic, key=f"user-{u}".encode(), value=encode_history(record),
                      partition=u % partitions)
    producer.flush()
    producer.close()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        data = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
        broker = LocalBroker(BrokerConfig(port=free_port(), controller_port=free_port(),
                                          data_dir=data))
        bootstrap = broker.start(timeout_s=180)
    try:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        write_s = fill(bootstrap, group, args.users, args.history, args.partitions)
        histories, stats = restore_partitions(bootstrap, group, range(args.partitions))
        restored = sum(len(h) for h in histories.values())
    finally:
        if broker is not None:
            broker.stop()
    if restored != args.users:
        print(f"restored {restored} users, expected {args.users}", file=sys.stderr)
        return 1
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    line = (f"| {dt.date.today()} | restore | {args.users:,} users x {args.history} items, "
            f"{args.partitions} partitions | {stats.seconds:.2f} s, "
            f"{stats.records / stats.seconds:,.0f} records/s (write: {write_s:.1f} s) | "
            f"{machine}, local single-node broker |")
    print(line)
    if not REPORT.exists():
        REPORT.write_text("# Benchmarks\n\nFigures as measured, machine named. "
                          "Each row is one run of a script in `benchmarks/`.\n\n"
                          "| date | what | setup | result | machine |\n|---|---|---|---|---|\n")
    with REPORT.open("a") as f:
        f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
