"""Failure test: one broker of a 3-node cluster is SIGKILLed while the worker runs under load.

On the local 3-node cluster (`LocalCluster`: replication factor 3 and
min.insync.replicas 2 by default), the topics a worker creates without
`--replication-factor` get three replicas. Then, while a producer streams events of
a few thousand interleaved users, the broker that leads a changelog partition (the
group's coordinator when it leads one) is SIGKILLed. The worker must go on serving
with two brokers (recommendations acknowledged and offsets committed while the
third is down), ride out the broker's return, and lose and double nothing: after a
graceful stop, `streamrec state dump` shows every user's history exactly as the
produced stream gives it, and a read_committed reader sees every user's last event
recommended.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from streamrec.kafka_io.local.cluster import LocalCluster
from streamrec.kafka_io.local.config import OFFSETS_PARTITIONS, ClusterConfig
from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.state.changelog import HistoryRecord, changelog_topic
from tests.conftest import free_port
from tests.integration.durability import SteadyProducer, assert_state_matches, wait_drained
from tests.integration.helpers import running
from tests.integration.test_crash_recovery import (
    assert_every_user_served_last_event,
    latest_recommendations,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]

logger = logging.getLogger(__name__)

# 16 events per user, 40 s of stream: the broker is killed 6 s in and is usually back
# (10 s to fence it and serve again, at least 5 s down, 10-20 s to restart) before its end.
USERS, EVENTS, RATE = 3_000, 48_000, 1_200
HISTORY = 64  # long_checkpoint's L: every event of a user stays in the history
CLUSTER_START_TIMEOUT_S = 240.0  # three JVMs on a busy 2-core machine
DUMP_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster of this module alone, on free ports: a node is killed mid-test."""
    ports: list[int] = []
    while len(ports) < 6:
        port = free_port()
        if port not in ports:
            ports.append(port)
    cluster = LocalCluster(ClusterConfig(ports=tuple(ports[:3]),
                                         controller_ports=tuple(ports[3:]),
                                         data_dir=tmp_path_factory.mktemp("cluster")))
    began = time.monotonic()
    cluster.start(timeout_s=CLUSTER_START_TIMEOUT_S)
    logger.info("cluster up at %s in %.1fs", cluster.bootstrap, time.monotonic() - began)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The worker's and the cluster's INFO lines in the report of a failure."""
    caplog.set_level(logging.INFO, logger="streamrec")
    caplog.set_level(logging.INFO, logger=__name__)


def names() -> dict[str, str]:
    """Fresh topic and group names; the worker creates every topic itself."""
    suffix = uuid.uuid4().hex[:8]
    return {"events": f"events-{suffix}", "recs": f"recs-{suffix}", "dlq": f"dlq-{suffix}",
            "group": f"group-{suffix}"}


def worker_config(bootstrap: str, model: Path, topics: dict[str, str]) -> WorkerConfig:
    """No `replication_factor`: the topics get the cluster's default."""
    return WorkerConfig(
        model_dir=model, bootstrap=bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=-1, device="cpu")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


def describe(bootstrap: str, topics: list[str]) -> dict[str, list[dict]]:
    """topic -> its partitions (partition_index, leader_id, replica_nodes, isr_nodes)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="failover-test")
    try:
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    for t in described:
        assert t["error_code"] == 0, t
    return {t["name"]: sorted(t["partitions"], key=lambda p: p["partition_index"])
            for t in described}


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode` of an ASCII string, as a signed 32-bit int."""
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(group: str) -> int:
    """The `__consumer_offsets` partition whose leader coordinates `group`
    (Kafka: `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions`)."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % OFFSETS_PARTITIONS


def pick_victim(bootstrap: str, topics: dict[str, str]) -> int:
    """The broker to kill: the group's coordinator if it leads a changelog partition,
    else the leader of changelog partition 0."""
    changelog = changelog_topic(topics["group"])
    parts = describe(bootstrap, [changelog, topics["events"], "__consumer_offsets"])
    coordinator = parts["__consumer_offsets"][coordinator_partition(topics["group"])]["leader_id"]
    changelog_leaders = [p["leader_id"] for p in parts[changelog]]
    victim = coordinator if coordinator in changelog_leaders else changelog_leaders[0]
    logger.info("killing node %d: coordinator %d, leaders of changelog %s, of events %s",
                victim, coordinator, changelog_leaders,
                [p["leader_id"] for p in parts[topics["events"]]])
    return victim


def progress(worker: Worker) -> tuple[float, float]:
    """(offset commits, recommendations acknowledged) so far: the worker's own counters.

    Read from the counters themselves, not the registry, whose gauges would call into
    the worker's state from this thread.
    """
    def total(counter: Any) -> float:
        return sum(s.value for family in counter.collect() for s in family.samples
                   if s.name.endswith("_total"))
    return total(worker.metrics.commits), total(worker.metrics.recommendations)


def dump_state(bootstrap: str, group: str) -> dict[str, HistoryRecord]:
    """Every user's history as `streamrec state dump` prints it."""
    done = subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", "state", "dump", "--bootstrap", bootstrap,
         "--group-id", group],
        capture_output=True, text=True, timeout=DUMP_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    state = {}
    for line in done.stdout.splitlines():
        doc = json.loads(line)
        assert doc["user_id"] not in state, f"{doc['user_id']} printed twice"
        state[doc["user_id"]] = HistoryRecord(tuple(doc["items"]), tuple(doc["ts"]),
                                              doc["offset"])
    return state


def test_topics_the_worker_creates_get_three_replicas(
    cluster: LocalCluster, tiny_checkpoint: Path,
) -> None:
    topics = names()
    worker = Worker(worker_config(cluster.bootstrap, tiny_checkpoint, topics))
    with running(worker, "replicas-worker"):
        wait_for(lambda: worker.ready, 120, "the worker to be assigned and restored")
    changelog = changelog_topic(topics["group"])
    created = [topics["events"], topics["recs"], topics["dlq"], changelog]
    parts = describe(cluster.bootstrap, created)
    for topic in created:
        assert len(parts[topic]) == worker.config.partitions, topic
        for p in parts[topic]:
            assert len(p["replica_nodes"]) == 3, (topic, p)
            assert sorted(p["isr_nodes"]) == sorted(p["replica_nodes"]), (topic, p)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, client_id="failover-test")
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)],
                                         config_filter="all")["topic"][changelog]
    finally:
        admin.close()
    assert configs["min.insync.replicas"]["value"] == "2"
    assert configs["cleanup.policy"]["value"] == "compact"


def test_one_broker_sigkilled_under_load_loses_and_doubles_nothing(
    cluster: LocalCluster, long_checkpoint: Path,
) -> None:
    bootstrap, topics = cluster.bootstrap, names()
    worker = Worker(worker_config(bootstrap, long_checkpoint, topics))
    producer = SteadyProducer(bootstrap, topics["events"], total=EVENTS, users=USERS, rate=RATE)
    with running(worker, "failover-worker") as handle:
        wait_for(lambda: worker.ready, 120, "the worker to be assigned and restored")
        producer.start()
        wait_for(lambda: len(producer.sent) >= EVENTS * 15 // 100 and progress(worker)[0] > 0,
                 120, "15% of the stream sent and a first commit")
        victim = pick_victim(bootstrap, topics)
        killed_at = time.monotonic()
        cluster.kill_node(victim)
        commits, served = progress(worker)
        # Two brokers of three: the worker must keep publishing and committing.
        wait_for(lambda: progress(worker)[0] > commits and progress(worker)[1] > served,
                 60, f"the worker to serve and commit with node {victim} down")
        logger.info("served and committed again %.1fs after the kill (%d events sent)",
                    time.monotonic() - killed_at, len(producer.sent))
        time.sleep(max(0.0, killed_at + 5 - time.monotonic()))  # down a few seconds at least
        assert handle.alive, f"the worker exited with node {victim} down: {handle.failure}"
        cluster.start_node(victim, timeout_s=120)
        logger.info("node %d back %.1fs after the kill (%d events sent)", victim,
                    time.monotonic() - killed_at, len(producer.sent))
        producer.join(timeout=240)
        assert not producer.is_alive(), "the producer did not finish"
        assert producer.error is None, producer.error
        assert len(producer.sent) == EVENTS
        wait_drained(bootstrap, topics["group"], topics["events"], timeout_s=180)
        assert handle.alive, f"the worker exited: {handle.failure}"
    # running() stopped the worker, checked it stopped cleanly, without an exception.

    assert_state_matches(dump_state(bootstrap, topics["group"]), producer.expected(HISTORY))
    docs = latest_recommendations(bootstrap, topics["recs"], "read_committed")
    assert_every_user_served_last_event(docs, producer)

    # And the killed broker is a full replica again.
    changelog = changelog_topic(topics["group"])

    def back_in_sync() -> bool:
        parts = describe(bootstrap, [topics["events"], changelog])
        return all(victim in p["isr_nodes"] for ps in parts.values() for p in ps)
    wait_for(back_in_sync, 60, f"node {victim} to rejoin every ISR")
    logger.info("leaders now: %s", {t: [p["leader_id"] for p in ps] for t, ps in
                                    describe(bootstrap, [topics["events"], changelog]).items()})
