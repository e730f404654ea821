"""The user cap: memory holds at most N users per partition, and no history is lost.

Evicted users' state stays in the changelog; when they come back the worker reads
it back first, so their history continues instead of starting again.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from tests.integration.durability import (
    SteadyProducer,
    assert_state_matches,
    final_state,
    wait_drained,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_capped_worker_evicts_and_reads_back_without_losing_history(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str],
) -> None:
    worker = Worker(WorkerConfig(
        model_dir=long_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=-1, max_batch=16, device="cpu", max_users=4,
        commit_interval_ms=0))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    producer = SteadyProducer(kafka_bootstrap, topics["events"], total=30 * 20, users=30,
                              rate=150)
    producer.start()
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    wait_drained(kafka_bootstrap, topics["group"], topics["events"])
    sizes = [len(store) for _, store in worker.state.stores()]
    evicted = worker.metrics.evicted._value.get()
    index_users = worker.metrics.evicted_index_users._value.get()
    reader, read_back = worker.state._reader, worker.state.read_back
    worker.stop()
    thread.join(timeout=60)
    assert not thread.is_alive()

    assert max(sizes) <= 4 + 16, sizes  # cap, plus at most one batch of returning users
    assert evicted > 0
    assert 0 < index_users <= 30
    # Returning users were read back through one long-lived reader, now closed.
    assert read_back > 0
    assert reader is not None
    assert reader.seeks > 0
    assert worker.state._reader is None
    assert_state_matches(final_state(kafka_bootstrap, topics["group"], partitions=3),
                         producer.expected(64))
