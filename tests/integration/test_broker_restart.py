"""Failure test 2: the broker restarts while the worker runs under load; and the
worker's session expires (it is frozen past the session timeout).

The worker rides a broker restart out without exiting (its producer retries, commits
that fail while the broker is away are retried), and nothing is lost or doubled: each
user's history, read from the changelog afterwards, matches the produced stream. A
short broker restart does not expire the group session (the coordinator restarts the
members' session timers when it loads the group), so session expiry has its own test:
the worker process is stopped (SIGSTOP) for longer than the session timeout, the group
evicts it, and when it resumes it must treat its partitions as lost (drop their state,
restore it from the changelog) and still lose and double nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from streamrec.kafka_io.local.broker import LocalBroker
from tests.integration.durability import (
    SteadyProducer,
    WorkerProcess,
    assert_state_matches,
    final_state,
    wait_drained,
    worker_args,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]


def test_worker_rides_out_a_broker_restart_without_loss(
    own_broker: LocalBroker, own_topics: dict[str, str], long_checkpoint: Path, tmp_path: Path,
) -> None:
    """(`own_broker` is stopped and started again mid-test.)"""
    bootstrap, topics = own_broker.config.bootstrap, own_topics

    producer = SteadyProducer(bootstrap, topics["events"], total=60 * 30, users=60, rate=60)
    worker = WorkerProcess(tmp_path / "worker.log", worker_args(bootstrap, long_checkpoint,
                                                                 topics))
    producer.start()
    worker.wait_processing()
    time.sleep(4)
    own_broker.stop()
    time.sleep(3)
    own_broker.start(timeout_s=180)
    producer.join(timeout=240)
    assert producer.error is None, producer.error
    wait_drained(bootstrap, topics["group"], topics["events"], timeout_s=180)
    assert worker.alive(), f"the worker exited during the broker restart: {worker.output()}"
    code = worker.terminate()
    assert code == 0, f"exit code {code}: {worker.output()}"
    state = final_state(bootstrap, topics["group"], partitions=3)
    assert_state_matches(state, producer.expected(64))


def test_session_expiry_drops_the_lost_partitions_and_loses_nothing(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    producer = SteadyProducer(kafka_bootstrap, topics["events"], total=60 * 25, users=60,
                              rate=60)
    worker = WorkerProcess(tmp_path / "worker.log", worker_args(kafka_bootstrap,
                                                                 long_checkpoint, topics))
    producer.start()
    worker.wait_processing()
    time.sleep(2)
    os.kill(worker.proc.pid, signal.SIGSTOP)  # a long GC pause, a frozen VM
    try:
        time.sleep(12)  # twice the worker's --session-timeout-ms (worker_args: 6000)
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    wait_drained(kafka_bootstrap, topics["group"], topics["events"], timeout_s=120)
    assert worker.alive(), f"the worker exited after its session expired: {worker.output()}"
    log = worker.log_path.read_text()
    # The worker's own account (Worker._on_lost) that the group took its partitions.
    assert "lost partitions [0, 1, 2] (session expired)" in log, worker.output()
    # ...and, its state dropped, restored it from the changelog when they came back.
    assert log.count("(restored [0, 1, 2])") == 2, worker.output()
    code = worker.terminate()
    assert code == 0, f"exit code {code}: {worker.output()}"
    state = final_state(kafka_bootstrap, topics["group"], partitions=3)
    assert_state_matches(state, producer.expected(64))
