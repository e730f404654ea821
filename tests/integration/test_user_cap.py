"""The user cap: memory stays near N users per partition, and no history is lost.

Evicted users' state stays in the changelog; when they come back the worker reads
it back first, so their history continues instead of starting again. The stream has
about 200 users per partition, 50 times the cap: a worker that did not evict would
end up holding every one of them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.state.changelog_read import restore_partitions
from streamrec.worker.state.durable import Applied
from tests.integration.durability import SteadyProducer, assert_state_matches, wait_drained

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]

MAX_USERS = 4  # the cap per partition
USERS = 600  # about 200 per partition of the 3, each seen twice (so read back once)


def test_capped_worker_evicts_and_reads_back_without_losing_history(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str],
) -> None:
    worker = Worker(WorkerConfig(
        model_dir=long_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=-1, max_batch=16, device="cpu",
        max_users=MAX_USERS, commit_interval_ms=0))
    # The store only grows when events are applied: its size right after each apply,
    # per partition, is the peak memory held (the cap is applied at each commit).
    peak: dict[int, int] = defaultdict(int)
    apply = worker.state.apply

    def measured(partition: int, *args: Any) -> Applied:
        applied = apply(partition, *args)
        peak[partition] = max(peak[partition], len(worker.state.store(partition)))
        return applied

    worker.state.apply = measured  # type: ignore[method-assign]
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not worker.ready:  # else the first poll is a backlog of every user at once
        assert time.monotonic() < deadline, "the worker was never assigned its partitions"
        time.sleep(0.05)
    producer = SteadyProducer(kafka_bootstrap, topics["events"], total=USERS * 2, users=USERS,
                              rate=250)
    producer.start()
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    wait_drained(kafka_bootstrap, topics["group"], topics["events"])
    evicted = worker.metrics.evicted._value.get()
    index_users = worker.metrics.evicted_index_users._value.get()
    reader, read_back = worker.state._reader, worker.state.read_back
    worker.stop()
    thread.join(timeout=60)
    assert not thread.is_alive()

    by_partition, _ = restore_partitions(kafka_bootstrap, topics["group"], range(3))
    users = {partition: len(state) for partition, state in by_partition.items()}
    # Memory peaks at the cap plus the users that arrive between two commits (the
    # cap is applied at each one): a few dozen here, more on a loaded machine, but
    # far from every user of the partition, which is what a worker without it holds.
    assert sorted(peak) == [0, 1, 2]
    assert all(peak[p] <= users[p] // 2 for p in users), (dict(peak), users)
    assert evicted > 0
    assert 0 < index_users <= USERS
    # Returning users were read back through one long-lived reader, now closed.
    assert read_back > 0
    assert reader is not None
    assert reader.seeks > 0
    assert worker.state._reader is None
    assert_state_matches({u: r for state in by_partition.values() for u, r in state.items()},
                         producer.expected(64))
