"""Produce-to-arrival latency of recommendations at a fixed offered load.

A worker runs (its own process, default settings) on a fresh events topic; a
consumer process reads its recommendations topic from the end; this process
produces events at a steady `rate` with `ts` = the time of sending, like a client
application would (kafka-python, `linger_ms` 5: the Java client's default since Kafka
4.0). The consumer records, per recommendation, its arrival time minus `event_ts`
(the time the newest event it answers was sent), so the figure covers the
producer's client, the broker both ways, and every worker stage.

`target="relay"` runs the Kafka client's floor in the worker's place instead: the
passthrough loop of `runners.py` as a live service, one record per event, no model
and no state, the same clients and settings.

    python -m streamrec.bench.latency consume --bootstrap B --topic T --seconds S --out F
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.bench.contenders import Stream, worker_command
from streamrec.bench.report import free_port
from streamrec.kafka_io.clients import ensure_topics, make_consumer, make_producer

logger = logging.getLogger(__name__)

IDLE_END_S = 5.0  # the consumer stops this long after the last record
CLIENT_LINGER_MS = 5  # the event producer's linger: the Java client's default since Kafka 4.0


@dataclass(frozen=True)
class Latency:
    """Latencies in ms of every recommendation that arrived, and the load offered."""

    rate: float
    seconds: float
    sent: int
    ms: np.ndarray

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.ms, q)) if len(self.ms) else float("nan")


def consume(bootstrap: str, topic: str, seconds: float, out: Path) -> None:
    """Read `topic` from its end for `seconds` (+ idle grace); save latencies to `out`."""
    consumer = make_consumer(bootstrap, None, "bench-latency", fetch_max_wait_ms=5,
                             enable_auto_commit=False)
    partitions = consumer.partitions_for_topic(topic) or set()
    from kafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)
    print("ready", flush=True)
    latencies: list[int] = []
    deadline = time.monotonic() + seconds
    last = time.monotonic()
    while time.monotonic() < deadline or time.monotonic() - last < IDLE_END_S:
        for records in consumer.poll(timeout_ms=50).values():
            now = time.time_ns() // 1_000_000
            last = time.monotonic()
            latencies.extend(now - json.loads(r.value)["event_ts"] for r in records)
        if time.monotonic() > deadline + 60:
            break
    np.save(out, np.asarray(latencies, dtype=np.int64))
    consumer.close()


def measure(bootstrap: str, model: Path, stream: Stream, rate: float, seconds: float,
            partitions: int, workdir: Path, extra: list[str] | None = None,
            target: str = "worker") -> Latency:
    """Run a worker (or the relay), a consumer and a paced producer; return the latencies."""
    tag = uuid.uuid4().hex[:6]
    topic, out = f"bench-latency-{tag}", f"bench-latency-{tag}-recs"
    ensure_topics(bootstrap, {topic: partitions, out: partitions})
    port, group = free_port(), f"bench-latency-{tag}"
    if target == "relay":
        command = [sys.executable, "-m", "streamrec.bench.runners", "relay", "--bootstrap",
                   bootstrap, "--topic", topic, "--out", out, "--group", group,
                   "--port", str(port)]
    else:
        command = worker_command(bootstrap, topic, out, group, model, port, "latency",
                                 extra or [])
    worker = subprocess.Popen(command)
    consumer = None
    try:
        _wait_ready(port, worker)
        result_file = workdir / f"latency-{tag}.npy"
        consumer = subprocess.Popen(
            [sys.executable, "-m", "streamrec.bench.latency", "consume", "--bootstrap",
             bootstrap, "--topic", out, "--seconds", str(seconds), "--out", str(result_file)],
            stdout=subprocess.PIPE, text=True)
        if consumer.stdout is None or consumer.stdout.readline().strip() != "ready":
            raise RuntimeError("latency consumer did not start")
        sent = _produce(bootstrap, topic, stream, rate, seconds)
        consumer.wait(timeout=seconds + 120)
        ms = np.load(result_file)
    finally:
        for proc in (consumer, worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    return Latency(rate, seconds, sent, ms)


def _produce(bootstrap: str, topic: str, stream: Stream, rate: float, seconds: float) -> int:
    """Send events at `rate`/s for `seconds`, `ts` = now; returns how many were sent."""
    producer = make_producer(bootstrap, "bench-latency-producer", linger_ms=CLIENT_LINGER_MS)
    start = time.monotonic()
    sent = 0
    n = len(stream)
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            user, item = stream.users[sent % n], stream.items[sent % n]
            value = json.dumps({"user_id": user, "item_id": item,
                                "ts": time.time_ns() // 1_000_000})
            producer.send(topic, key=user.encode(), value=value.encode())
            sent += 1
        time.sleep(0.001)
    producer.flush()
    producer.close()
    return sent


def _wait_ready(port: int, worker: subprocess.Popen, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"latency worker exited with {worker.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError("latency worker never became ready")


def main(argv: list[str] | None = None) -> int:
    """The consumer side, run as its own process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["consume"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    consume(args.bootstrap, args.topic, args.seconds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
