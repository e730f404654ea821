"""Failure test 2: the broker restarts while the worker runs under load.

The worker rides it out without exiting (its producer retries, commits that fail
while the broker is away are retried), and nothing is lost or doubled: each user's
history, read from the changelog afterwards, matches the produced stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streamrec.kafka_io.local_broker import BrokerConfig, LocalBroker
from tests.conftest import free_port
from tests.integration.durability import (
    SteadyProducer,
    WorkerProcess,
    assert_state_matches,
    final_state,
    wait_drained,
    worker_args,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test alone: it is stopped and started again mid-test."""
    broker = LocalBroker(BrokerConfig(port=free_port(), controller_port=free_port(),
                                      data_dir=tmp_path / "kafka"))
    broker.start(timeout_s=180)
    try:
        yield broker
    finally:
        broker.stop()


def test_worker_rides_out_a_broker_restart_without_loss(
    own_broker: LocalBroker, long_checkpoint: Path, tmp_path: Path,
) -> None:
    bootstrap = own_broker.config.bootstrap
    suffix = uuid.uuid4().hex[:8]
    topics = {"events": f"events-{suffix}", "recs": f"recs-{suffix}", "dlq": f"dlq-{suffix}",
              "group": f"group-{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topics["events"], 3, 1)])
    admin.wait_for_topics([topics["events"]], timeout_ms=60_000)
    admin.close()

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
