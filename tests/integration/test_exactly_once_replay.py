"""A replay of events whose state is already in the changelog: with --exactly-once they
are not answered again, because their recommendations committed with that state
(without it output is at-least-once and they are). The group's offsets are rewound
to 0, the worst a crash can leave behind: every event is read a second time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.conftest import free_port
from tests.integration.durability import WorkerProcess, wait_drained, worker_args
from tests.integration.helpers import event, metric_sum, producer, scrape
from tests.integration.test_crash_recovery import latest_recommendations

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]

T0 = 1_700_000_000_000


def run_until_drained(bootstrap: str, topics: dict[str, str], args: list[str], log: Path
                      ) -> float:
    """Run a worker process until the group has committed every event; returns its
    streamrec_events_replayed_total."""
    port = free_port()
    worker = WorkerProcess(log, [*args, "--metrics-port", str(port)])
    try:
        wait_drained(bootstrap, topics["group"], topics["events"])
        replayed = metric_sum(scrape(port), "streamrec_events_replayed_total")
    finally:
        assert worker.terminate() == 0, worker.output()
    return replayed


def rewind(bootstrap: str, group: str, topic: str, partitions: int = 3) -> None:
    """Commit offset 0 for every partition of the (memberless) group."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-rewind")
    try:
        done = admin.alter_group_offsets(group, {
            TopicPartition(topic, p): OffsetAndMetadata(0, "", -1) for p in range(partitions)})
    finally:
        admin.close()
    assert {e.__name__ for e in done.values()} == {"NoError"}, done


def test_with_exactly_once_events_already_in_the_changelog_are_not_answered_again(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    send = producer(kafka_bootstrap)
    for n in range(120):
        key, value = event(f"user-{n % 12}", f"i{n % 40 + 1}", T0 + n)
        send.send(topics["events"], key=key, value=value)
    send.flush()
    send.close()
    # Child processes, as in production: a restart is a new process.
    args = worker_args(kafka_bootstrap, long_checkpoint, topics, "--max-batch", "4",
                       "--commit-interval-ms", "100", "--instance-id", "replay",
                       "--exactly-once")
    run_until_drained(kafka_bootstrap, topics, args, tmp_path / "first.log")
    isolation = "read_committed"
    first = latest_recommendations(kafka_bootstrap, topics["recs"], isolation)
    assert {d["user_id"] for d in first} == {f"user-{u}" for u in range(12)}

    rewind(kafka_bootstrap, topics["group"], topics["events"])
    replayed = run_until_drained(kafka_bootstrap, topics, args, tmp_path / "again.log")
    assert replayed == 120  # state: nothing applied twice
    docs = latest_recommendations(kafka_bootstrap, topics["recs"], isolation)
    twice = Counter((d["user_id"], d["event_ts"]) for d in docs)
    repeated = {key for key, n in twice.items() if n > 1}
    assert not repeated
    assert len(docs) == len(first)
