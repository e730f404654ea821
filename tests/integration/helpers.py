"""Small helpers for integration tests: produce, consume to a condition, scrape metrics."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streamrec.kafka_io.clients import make_consumer
from streamrec.kafka_io.port import OFFSET_BEGINNING
from streamrec.kafka_io.port import TopicPartition as Partition
from streamrec.kafka_io.security import KafkaSecurity


def producer(bootstrap: str) -> KafkaProducer:
    """A plain producer that can send records up to 8 MiB."""
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                         max_request_size=8 * 1024 * 1024, linger_ms=2)


def event(user: str, item: str, ts: int | None = None) -> tuple[bytes, bytes]:
    """(key, value) of a valid event."""
    doc: dict[str, Any] = {"user_id": user, "item_id": item}
    if ts is not None:
        doc["ts"] = ts
    return user.encode(), json.dumps(doc).encode()


def consume_until(
    bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout_s: float = 90.0,
    security: KafkaSecurity | None = None,
) -> list[Any]:
    """Read `topic` from the beginning (group-less, through the Kafka port on the adapter
    under test) until `done(records)` or the timeout; the topic may not exist yet."""
    consumer = make_consumer(bootstrap, None, "test-reader", security)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not consumer.assignment():
            partitions = consumer.partitions_for(topic)
            if partitions:
                consumer.assign({Partition(topic, p): OFFSET_BEGINNING for p in partitions})
            else:
                time.sleep(0.2)
        while time.monotonic() < deadline and not done(records):
            for batch in consumer.poll(0.5).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def latest_by_user(records: list[Any], into: dict[str, dict[str, Any]]) -> set[str]:
    """Fold recommendation records into `into` (user -> newest doc); returns the users."""
    for r in records:
        into[r.key.decode()] = json.loads(r.value)
    return set(into)


def assert_recommendations_avoid_history(
    latest: dict[str, dict[str, Any]], history: dict[str, list[str]], k: int,
) -> None:
    """Every user was served k items, best first, none of them from their history."""
    assert set(latest) == set(history)
    for user, rec in latest.items():
        items = [x["item_id"] for x in rec["items"]]
        assert rec["user_id"] == user
        assert len(items) == k
        assert not set(items) & set(history[user]), f"{user} got history items back"
        scores = [x["score"] for x in rec["items"]]
        assert scores == sorted(scores, reverse=True)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (missing = none)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        out = {}
        for p in parts:
            offset = consumer.committed(TopicPartition(topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of `topic`."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def scrape(port: int) -> dict[str, float]:
    """Prometheus samples from /metrics as {'name{label="v",...}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def metric_sum(samples: dict[str, float], name: str) -> float:
    """Sum of a metric's samples over all label values."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


@dataclass
class WorkerThread:
    """A worker's loop running in a thread, and what it raised (if anything)."""

    worker: Any  # streamrec.worker.app.Worker
    thread: threading.Thread
    failure: list[BaseException] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


@contextmanager
def running(worker: Any, name: str = "test-worker") -> Iterator[WorkerThread]:
    """Run `worker` in a thread; on the way out stop it, join it and check it stopped
    cleanly, without an exception."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)
            raise

    handle = WorkerThread(worker, threading.Thread(target=run, daemon=True, name=name), failure)
    handle.thread.start()
    try:
        yield handle
    finally:
        worker.stop()
        handle.thread.join(timeout=60)
    assert not handle.thread.is_alive()
    assert handle.failure == []
