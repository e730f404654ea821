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

The worker (or relay) runs on the adapter `client` names; the producer and the
consumer that measure it (the probes) on `probe_client`; None for either means the
environment's `STREAMREC_KAFKA_CLIENT`, else auto. The consumer polls every
`PROBE_POLL_S`: librdkafka's batch consume waits out its whole timeout unless the
batch fills, so a longer poll would date arrivals late.

    python -m streamrec.bench.latency consume --bootstrap B --topic T --seconds S --out F

(SIGTERM ends the consumer early; what arrived until then is saved.)
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.bench.contenders import Stream, client_env, proc_cpu_s, worker_command
from streamrec.bench.report import free_port
from streamrec.kafka_io.clients import ensure_topics, make_consumer, make_producer, select_client
from streamrec.kafka_io.port import CLIENT_CHOICES, Producer, TopicPartition

logger = logging.getLogger(__name__)

IDLE_END_S = 5.0  # the consumer stops this long after the last record
CLIENT_LINGER_MS = 5  # the event producer's linger: the Java client's default since Kafka 4.0
PROBE_POLL_S = 0.002  # the latency consumer's poll: the most an arrival is dated late
STARTUP_POLL_S = 0.05  # its polls until the first records arrive
OFFSETS_TIMEOUT_S = 30.0
# A librdkafka producer (2.16) asks for its idempotent producer id once its first
# broker connection is up; when the bootstrap connection it got metadata from is
# already replaced by the broker's own, it waits for a 500 ms timer instead, and
# queues every record until then (librdkafka debug log: "No brokers available for
# Idempotent producer ... Starting PID FSM timer", the id acquired 450 ms after the
# connection was up). Seen in about half of the latency runs: the first 500 ms of
# events, for the worker and the relay alike, arrived 500 ms late. So the event
# producer is made before the worker starts, and the run starts this long after the
# worker (or relay) is ready, so that its own new producer has its id too.
PRODUCER_ID_WAIT_S = 0.6


@dataclass(frozen=True)
class Latency:
    """Latencies in ms of every recommendation that arrived, and the load offered."""

    rate: float
    seconds: float
    sent: int
    ms: np.ndarray
    cpu_s: float = float("nan")  # CPU of the worker (or relay) from first send to last arrival
    sent_ms: np.ndarray | None = None  # when each record's event was sent (epoch ms)

    def percentile(self, q: float, after_s: float = 0.0) -> float:
        """The `q`th percentile, of the events sent `after_s` or later into the run."""
        ms = self.ms
        if after_s and self.sent_ms is not None and len(ms):
            ms = ms[self.sent_ms >= self.sent_ms.min() + after_s * 1000]
        return float(np.percentile(ms, q)) if len(ms) else float("nan")

    def summary(self, after_s: float = 0.0) -> Window:
        """Percentiles of the events sent `after_s` or later into the run."""
        sent = self.sent_ms if self.sent_ms is not None else np.zeros(len(self.ms))
        start = float(sent.min()) + after_s * 1000 if len(sent) else 0.0
        return window(self.ms, sent, start, float("inf"))


@dataclass(frozen=True)
class Window:
    """Latency (ms) of the recommendations whose event was sent within a window."""

    events: int
    p50: float
    p95: float
    p99: float
    max: float


def window(ms: np.ndarray, sent_ms: np.ndarray, start_ms: float, end_ms: float) -> Window:
    """The latencies of the events sent in [start_ms, end_ms)."""
    picked = ms[(sent_ms >= start_ms) & (sent_ms < end_ms)]
    if not len(picked):
        nan = float("nan")
        return Window(0, nan, nan, nan, nan)
    p50, p95, p99 = (float(x) for x in np.percentile(picked, (50, 95, 99)))
    return Window(len(picked), p50, p95, p99, float(picked.max()))


def consume(bootstrap: str, topic: str, seconds: float, out: Path,
            stop: threading.Event | None = None) -> None:
    """Read `topic` from its end for `seconds` (+ idle grace), or until `stop` is set;
    save latencies to `out`."""
    consumer = make_consumer(bootstrap, None, "bench-latency", fetch_max_wait_ms=5)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for(topic) or ())]
        # The end offsets as numbers, not "the end": resolved now, so nothing the
        # producer sends after "ready" is skipped by a later resolution.
        ends = consumer.watermarks(tps, OFFSETS_TIMEOUT_S)
        consumer.assign({tp: ends[tp][1] for tp in tps})
        print("ready", flush=True)
        latencies: list[int] = []
        sent: list[int] = []
        deadline = time.monotonic() + seconds
        last = time.monotonic()
        stop = stop or threading.Event()
        while not stop.is_set() and (time.monotonic() < deadline
                                     or time.monotonic() - last < IDLE_END_S):
            # Longer polls until records come: kafka-python 3.0 never starts fetching
            # when every poll is 5 ms or shorter.
            wait = PROBE_POLL_S if latencies else STARTUP_POLL_S
            for records in consumer.poll(wait).values():
                now = time.time_ns() // 1_000_000
                last = time.monotonic()
                stamps = [json.loads(r.value)["event_ts"] for r in records]  # type: ignore[arg-type]
                sent.extend(stamps)
                latencies.extend(now - ts for ts in stamps)
            if time.monotonic() > deadline + 60:
                break
        np.save(out, np.asarray([latencies, sent], dtype=np.int64).reshape(2, -1))
    finally:
        consumer.close()


def measure(bootstrap: str, model: Path, stream: Stream, rate: float, seconds: float,
            partitions: int, workdir: Path, extra: list[str] | None = None,
            target: str = "worker", client: str | None = None,
            probe_client: str | None = None,
            prepare: Callable[[str], None] | None = None) -> Latency:
    """Run a worker (or the relay; `extra` are then its runner flags) on `client`, a
    consumer and a paced producer on `probe_client`; return the latencies.
    `prepare(group)` runs before the worker starts (e.g. to fill its changelog)."""
    tag = uuid.uuid4().hex[:6]
    topic, out = f"bench-latency-{tag}", f"bench-latency-{tag}-recs"
    ensure_topics(bootstrap, {topic: partitions, out: partitions}, client=probe_client)
    port, group = free_port(), f"bench-latency-{tag}"
    if prepare is not None:
        prepare(group)
    if target == "relay":
        command = [sys.executable, "-m", "streamrec.bench.runners", "relay", "--bootstrap",
                   bootstrap, "--topic", topic, "--out", out, "--group", group,
                   "--port", str(port), *(extra or [])]
    else:
        command = worker_command(bootstrap, topic, out, group, model, port, "latency",
                                 extra or [])
    # The event producer first: a new librdkafka producer may hold its records until
    # it has a producer id, up to PRODUCER_ID_WAIT_S (see the constant).
    producer = make_producer(bootstrap, "bench-latency-producer", client=probe_client,
                             linger_ms=CLIENT_LINGER_MS)
    worker: subprocess.Popen | None = None
    consumer = None
    try:
        worker = subprocess.Popen(command, env=client_env(client))
        wait_ready(port, worker)
        ready = time.monotonic()
        result_file = workdir / f"latency-{tag}.npy"
        consumer = start_consumer(bootstrap, out, seconds, result_file, probe_client)
        # the worker's (or relay's) own new producer: its id too (PRODUCER_ID_WAIT_S)
        time.sleep(max(0.0, ready + PRODUCER_ID_WAIT_S - time.monotonic()))
        cpu0 = proc_cpu_s(worker.pid)
        sent = _produce(producer, topic, stream, rate, seconds)
        consumer.wait(timeout=seconds + 120)
        cpu = proc_cpu_s(worker.pid) - cpu0
        ms, sent_ms = np.load(result_file)
    finally:
        producer.close(60.0)
        for proc in (consumer, worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    return Latency(rate, seconds, sent, ms, cpu, sent_ms)


def start_consumer(bootstrap: str, topic: str, seconds: float, out: Path,
                   client: str | None = None) -> subprocess.Popen:
    """The latency consumer (`consume`) as a process on `client`, reading `topic` from
    its end; returns once it is positioned, so every record produced after counts."""
    consumer = subprocess.Popen(
        [sys.executable, "-m", "streamrec.bench.latency", "consume", "--bootstrap",
         bootstrap, "--topic", topic, "--seconds", str(seconds), "--out", str(out)],
        stdout=subprocess.PIPE, text=True, env=client_env(client))
    if consumer.stdout is None or consumer.stdout.readline().strip() != "ready":
        consumer.kill()
        raise RuntimeError("latency consumer did not start")
    return consumer


def _produce(producer: Producer, topic: str, stream: Stream, rate: float,
             seconds: float) -> int:
    """Send events at `rate`/s for `seconds`, `ts` = now; returns how many were sent."""
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
            producer.send(topic, value.encode(), key=user.encode())
            sent += 1
        producer.poll(0)  # delivery reports: librdkafka serves them only here
        time.sleep(0.001)
    producer.flush(60.0)
    return sent


def is_ready(port: int) -> bool:
    """Whether the worker (or relay) on `port` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(port: int, worker: subprocess.Popen, timeout_s: float = 300.0) -> None:
    """Until `worker` is ready; RuntimeError if it exits or takes `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}")
        if is_ready(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready after {timeout_s:.0f}s")


def main(argv: list[str] | None = None) -> int:
    """The consumer side, run as its own process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["consume"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kafka-client", choices=CLIENT_CHOICES, default=None,
                        help="Kafka adapter (default: env STREAMREC_KAFKA_CLIENT, else auto)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    select_client(args.kafka_client)
    stop = threading.Event()  # SIGTERM: save what arrived and exit (a run of open length)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consume(args.bootstrap, args.topic, args.seconds, args.out, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
