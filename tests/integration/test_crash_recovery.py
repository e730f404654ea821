"""Failure tests 1 and 5: SIGKILL the worker at random points of a steady stream.

After every kill a new worker restores the histories from the changelog and goes
on. At the end, each user's history (read from the changelog, as a restore sees
it) holds every produced event exactly once, in order, and every user has a
recommendation for their last event. With --exactly-once, a read_committed
consumer of the recommendations also sees no duplicate.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.integration.durability import (
    SteadyProducer,
    WorkerProcess,
    assert_state_matches,
    final_state,
    wait_drained,
    worker_args,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS, EVENTS_PER_USER, HISTORY = 60, 40, 64


def run_with_kills(bootstrap: str, model: Path, topics: dict[str, str], tmp_path: Path,
                   kills: int, seed: int, extra: tuple[str, ...] = ()) -> SteadyProducer:
    producer = SteadyProducer(bootstrap, topics["events"], USERS * EVENTS_PER_USER, USERS,
                              rate=100)
    args = worker_args(bootstrap, model, topics, *extra)
    worker = WorkerProcess(tmp_path / "worker.log", args)
    producer.start()
    rng = random.Random(seed)
    for _ in range(kills):
        worker.wait_processing()  # kill a worker that is mid-stream, not one still booting
        time.sleep(rng.uniform(0.3, 2.5))
        worker.kill()
        worker = WorkerProcess(tmp_path / "worker.log", args)
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    wait_drained(bootstrap, topics["group"], topics["events"])
    assert worker.alive(), worker.output()
    code = worker.terminate()
    assert code == 0, f"exit code {code}: {worker.output()}"
    return producer


def latest_recommendations(bootstrap: str, topic: str, isolation: str) -> list[dict]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", isolation_level=isolation,
                             enable_auto_commit=False)
    docs: list[dict] = []
    idle = 0
    try:
        while idle < 4:
            polled = consumer.poll(timeout_ms=500)
            idle = 0 if polled else idle + 1
            for records in polled.values():
                docs.extend(json.loads(r.value) for r in records)
    finally:
        consumer.close()
    return docs


def assert_every_user_served_last_event(docs: list[dict], producer: SteadyProducer) -> None:
    last_ts = {u: ts[-1] for u, (_, ts) in producer.expected(1).items()}
    served: dict[str, int] = {}
    for d in docs:
        served[d["user_id"]] = max(served.get(d["user_id"], 0), d["event_ts"])
    assert {u: served.get(u) for u in last_ts} == last_ts


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    producer = run_with_kills(kafka_bootstrap, long_checkpoint, topics, tmp_path,
                              kills=3, seed=1)
    state = final_state(kafka_bootstrap, topics["group"], partitions=3)
    assert_state_matches(state, producer.expected(HISTORY))
    docs = latest_recommendations(kafka_bootstrap, topics["recs"], "read_uncommitted")
    assert_every_user_served_last_event(docs, producer)


def test_exactly_once_sigkill_mid_transaction_no_duplicate_no_gap(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    producer = run_with_kills(kafka_bootstrap, long_checkpoint, topics, tmp_path,
                              kills=3, seed=2,
                              extra=("--exactly-once", "--instance-id", "eos-a"))
    state = final_state(kafka_bootstrap, topics["group"], partitions=3)
    assert_state_matches(state, producer.expected(HISTORY))
    docs = latest_recommendations(kafka_bootstrap, topics["recs"], "read_committed")
    keys = [(d["user_id"], d["event_ts"]) for d in docs]
    duplicates = len(keys) - len(set(keys))
    assert duplicates == 0, f"{duplicates} recommendations seen twice by read_committed"
    assert_every_user_served_last_event(docs, producer)
    # The kills really did interrupt transactions: aborted records exist underneath.
    raw = latest_recommendations(kafka_bootstrap, topics["recs"], "read_uncommitted")
    assert len(raw) >= len(docs)
