"""The local broker and kafka-python 3.x against Kafka 4.x, as the worker uses them.

A real round trip with keys and headers, a consumer group that commits and reads
its offsets back (ListOffsets, OffsetCommit, OffsetFetch: see dpkp/kafka-python#2679
for the version negotiation this exercises), and the broker's life cycle: status,
idempotent start, clear refusals and failures, and a stop that leaves no JVM behind.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from streamrec.cli.main import main
from streamrec.kafka_io.errors import BrokerError
from streamrec.kafka_io.local.broker import BrokerStatus, LocalBroker
from streamrec.kafka_io.local.config import BrokerConfig
from streamrec.kafka_io.local.probes import process_args
from tests.conftest import NewTopicFactory, free_port

pytestmark = pytest.mark.integration

POLL_TIMEOUT_S = 60.0


def poll_records(consumer: KafkaConsumer, count: int) -> list[Any]:
    """Poll until `count` records arrived (or fail after POLL_TIMEOUT_S)."""
    records: list[Any] = []
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    assert len(records) == count, f"got {len(records)} of {count} records"
    return records


def producer(bootstrap: str) -> KafkaProducer:
    """The delivery settings the worker relies on: acks from all replicas, idempotence."""
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         linger_ms=5)


def consumer(bootstrap: str, group_id: str) -> KafkaConsumer:
    """A group member with manual commits and read_committed, as the worker reads."""
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         isolation_level="read_committed")


def broker_config(data_dir: Path, **overrides: Any) -> BrokerConfig:
    return BrokerConfig(port=free_port(), controller_port=free_port(), data_dir=data_dir,
                        **overrides)


def test_broker_answers_metadata(admin: KafkaAdminClient) -> None:
    cluster = admin.describe_cluster()
    assert cluster["brokers"], cluster
    assert cluster["controller_id"] >= 0
    assert not any(b.get("is_fenced") for b in cluster["brokers"])


def test_round_trip_keeps_keys_values_headers_and_key_order(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=3)
    sender = producer(kafka_bootstrap)
    sent = []
    for seq in range(30):
        key = f"user-{seq % 7}".encode()
        value = json.dumps({"user_id": f"user-{seq % 7}", "item_id": seq}).encode()
        headers = [("source", b"test"), ("seq", str(seq).encode())]
        meta = sender.send(topic, key=key, value=value, headers=headers).get(timeout=60)
        sent.append((meta.partition, key, value, headers))
    sender.close()

    reader = consumer(kafka_bootstrap, f"g-{uuid.uuid4().hex}")
    reader.subscribe([topic])
    try:
        records = poll_records(reader, len(sent))
    finally:
        reader.close()

    received = sorted(records, key=lambda r: (r.partition, r.offset))
    got = [(r.partition, r.key, r.value, list(r.headers)) for r in received]
    assert sorted(got) == sorted(sent)
    # Same key, same partition, in the order sent: per-user order survives.
    by_key: dict[bytes, list[int]] = {}
    for _, key, value, _ in got:
        by_key.setdefault(key, []).append(json.loads(value)["item_id"])
    assert all(items == sorted(items) for items in by_key.values())
    assert len({(key, part) for part, key, _, _ in got}) == len(by_key)


def test_group_commit_and_offsets_are_read_back(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=2)
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    sender = producer(kafka_bootstrap)
    for n in range(10):
        sender.send(topic, key=b"k", value=str(n).encode(), partition=n % 2)
    sender.flush(timeout=60)

    group = f"g-{uuid.uuid4().hex}"
    first = consumer(kafka_bootstrap, group)
    first.subscribe([topic])
    try:
        poll_records(first, 10)
        first.commit()
        assert first.end_offsets(tps) == {tps[0]: 5, tps[1]: 5}
        assert first.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
        assert {tp: first.committed(tp) for tp in tps} == {tps[0]: 5, tps[1]: 5}
        by_time = first.offsets_for_times({tps[0]: 0})
        assert by_time[tps[0]] is not None
        assert by_time[tps[0]].offset == 0
    finally:
        first.close()

    # A new member of the group resumes after the commit: nothing is delivered twice.
    sender.send(topic, value=b"after", partition=1).get(timeout=60)
    sender.close()
    second = consumer(kafka_bootstrap, group)
    second.subscribe([topic])
    try:
        records = poll_records(second, 1)
        assert [(r.partition, r.offset, r.value) for r in records] == [(1, 5, b"after")]
    finally:
        second.close()


def test_status_and_stop_of_a_broker_that_never_ran(tmp_path: Path) -> None:
    broker = LocalBroker(broker_config(tmp_path / "kafka"))
    assert broker.status() == BrokerStatus(running=False, pid=None,
                                           bootstrap=broker.config.bootstrap)
    assert broker.stop() is False


def test_cli_status_exits_3_when_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["broker", "status", "--data-dir", str(tmp_path), "--port", "19999"])
    assert code == 3
    assert "running: no" in capsys.readouterr().out


def test_start_status_stop_leaves_no_java_process(tmp_path: Path) -> None:
    config = broker_config(tmp_path / "kafka")
    broker = LocalBroker(config)
    with broker as bootstrap:
        assert bootstrap == config.bootstrap
        state = broker.status()
        assert state.running
        assert state.pid is not None
        # A second start from the same data dir finds it and starts nothing new.
        assert LocalBroker(config).start(timeout_s=60) == bootstrap
        assert LocalBroker(config).status().pid == state.pid
    assert "kafka.Kafka" not in process_args(state.pid)
    assert broker.status() == BrokerStatus(running=False, pid=None, bootstrap=bootstrap)
    assert not broker.pid_path.exists()


def test_start_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = LocalBroker(BrokerConfig(port=port, controller_port=free_port(),
                                          data_dir=tmp_path / "kafka"))
        with pytest.raises(BrokerError, match=f"127.0.0.1:{port} is already in use"):
            broker.start()


def test_start_refuses_without_jars(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    broker = LocalBroker(broker_config(tmp_path / "kafka", libs_dir=tmp_path / "libs"))
    with pytest.raises(BrokerError, match=r"run deploy/setup\.sh"):
        broker.start()


def test_a_broker_that_dies_fails_start_with_its_log(tmp_path: Path) -> None:
    config = broker_config(tmp_path / "kafka")
    broker = LocalBroker(config)
    # A data dir formatted for another node: Kafka refuses to start on it.
    broker.log_dirs.mkdir(parents=True)
    (broker.log_dirs / "meta.properties").write_text(
        "version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\nnode.id=7\n"
        "directory.id=BBBBBBBBBBBBBBBBBBBBBB\n")
    with pytest.raises(BrokerError, match="exited before answering") as failure:
        broker.start(timeout_s=120)
    assert "last lines of" in str(failure.value)
    assert broker.status().running is False
