"""Failure test 3: two workers in one group; one stops, then comes back.

Partitions move both ways and histories follow through the changelog: no user's
history is lost or forked, and at no time do both workers apply events of the same
partition. Both workers run in this process so one journal, in real time order,
records every assignment, revocation and applied batch of events.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from tests.integration.durability import (
    SteadyProducer,
    assert_state_matches,
    final_state,
    wait_drained,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]


class Journal:
    """Thread-safe, time-ordered record of what each worker owned and applied."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[tuple[str, str, frozenset[int]]] = []

    def add(self, worker: str, kind: str, partitions: set[int]) -> None:
        with self.lock:
            self.entries.append((worker, kind, frozenset(partitions)))

    def check_exclusive(self) -> int:
        """Replay the journal: every apply is by the partition's only active owner."""
        active: dict[str, set[int]] = {}
        applies = 0
        for worker, kind, parts in self.entries:
            if kind == "assigned":
                active[worker] = set(parts)
            elif kind in ("revoked", "lost", "stopped"):
                active[worker] = set()
            elif kind == "apply":
                applies += 1
                (partition,) = parts
                assert partition in active.get(worker, set()), (worker, partition)
                others = [w for w, owned in active.items() if w != worker and partition in owned]
                assert not others, f"{worker} and {others} both active on partition {partition}"
        return applies


def journaled_worker(config: WorkerConfig, name: str, journal: Journal) -> Worker:
    """A worker whose rebalance callbacks and state updates are written to `journal`."""
    worker = Worker(config)
    on_assigned, on_revoked, on_lost = worker._on_assigned, worker._on_revoked, worker._on_lost
    apply = worker.state.apply

    def assigned(tps: list[Any]) -> None:
        on_assigned(tps)
        journal.add(name, "assigned", {tp.partition for tp in tps})

    def revoked(tps: list[Any]) -> None:
        journal.add(name, "revoked", set())
        on_revoked(tps)

    def lost(tps: list[Any]) -> None:
        journal.add(name, "lost", set())
        on_lost(tps)

    def applied(partition: int, *args: Any) -> Any:
        journal.add(name, "apply", {partition})
        return apply(partition, *args)

    worker._on_assigned, worker._on_revoked, worker._on_lost = assigned, revoked, lost
    worker.state.apply = applied  # type: ignore[method-assign]
    return worker


def test_two_workers_hand_partitions_and_histories_back_and_forth(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str],
) -> None:
    base = WorkerConfig(
        model_dir=long_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=-1, max_batch=32, device="cpu",
        session_timeout_ms=6000)
    journal = Journal()
    running: dict[str, tuple[Worker, threading.Thread]] = {}

    def start(name: str) -> Worker:
        worker = journaled_worker(dataclasses.replace(base, instance_id=name), name, journal)
        thread = threading.Thread(target=worker.run, name=name, daemon=True)
        thread.start()
        running[name] = (worker, thread)
        return worker

    def stop(name: str) -> None:
        worker, thread = running.pop(name)
        worker.stop()
        thread.join(timeout=90)
        assert not thread.is_alive(), f"{name} did not stop"
        journal.add(name, "stopped", set())

    def owned(name: str) -> set[int]:
        ownership = running[name][0]._ownership  # built once the worker runs
        return set(ownership.owned) if ownership is not None else set()

    def wait_for(condition: Any, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting until {what}")

    producer = SteadyProducer(kafka_bootstrap, topics["events"], total=60 * 50, users=60,
                              rate=80)
    start("a")
    wait_for(lambda: owned("a") == {0, 1, 2}, "a owns every partition")
    producer.start()
    time.sleep(5)
    start("b")
    wait_for(lambda: owned("a") and owned("b") and owned("a") | owned("b") == {0, 1, 2},
             "a and b share the partitions")
    time.sleep(5)
    stop("b")
    wait_for(lambda: owned("a") == {0, 1, 2}, "a owns everything again")
    time.sleep(5)
    start("b")
    wait_for(lambda: owned("a") and owned("b") and owned("a") | owned("b") == {0, 1, 2},
             "b is back")
    producer.join(timeout=180)
    assert producer.error is None, producer.error
    wait_drained(kafka_bootstrap, topics["group"], topics["events"])
    in_memory = {}
    for worker, _ in running.values():
        for _, store in worker.state.stores():
            for user in list(store._slots):
                in_memory[user] = worker.state.items.external(store.history(user)[0])
    stop("a")
    stop("b")

    assert journal.check_exclusive() > 0
    expected = producer.expected(64)
    assert_state_matches(final_state(kafka_bootstrap, topics["group"], partitions=3), expected)
    # The owners' memory agrees with the changelog: nothing forked.
    assert in_memory == {u: items for u, (items, _) in expected.items()}
