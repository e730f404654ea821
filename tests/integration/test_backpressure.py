"""Backpressure: while the model stage is behind, the backlog stays in Kafka.

A preloaded topic of distinct users is far more than the model can serve at once.
Without backpressure the loop would read it all into memory (every user pending); with
`--max-pending` the consumer pauses at the limit and resumes at half, so the users
waiting in memory stay near the limit, and every user is still served.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from tests.integration.helpers import consume_until, event, latest_by_user, producer, running

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

USERS = 4000
MAX_POLL_RECORDS = 500  # the worker's per-poll cap at this --max-batch


def test_pending_users_stay_near_the_limit_and_everyone_is_served(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str],
) -> None:
    prod = producer(kafka_bootstrap)
    for u in range(USERS):
        key, value = event(f"user-{u}", f"i{1 + u % 40}")
        prod.send(topics["events"], key=key, value=value)
    prod.flush()
    prod.close()

    worker = Worker(WorkerConfig(
        model_dir=tiny_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=-1, max_batch=8, max_pending=32, device="cpu"))
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(worker.batcher))
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    seen: dict[str, dict] = {}
    with running(worker):
        watcher.start()
        consume_until(kafka_bootstrap, topics["recs"],
                      lambda recs: len(latest_by_user(recs, seen)) >= USERS, timeout_s=180)
        done.set()
        watcher.join()
        pauses = worker.metrics.backpressure_pauses._value.get()
    assert len(seen) == USERS
    assert pauses > 0
    # The limit, plus what one poll can bring in before the pause takes effect.
    assert peak <= 32 + MAX_POLL_RECORDS, peak
