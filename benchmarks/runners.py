"""The processes `bench e2e` runs beside the worker, each in its own interpreter.

    passthrough   the Kafka client ceiling: consume -> decode JSON -> produce one small
                  record per event, commit every second after a flush; no model
    naive         the same model, index and history store called once per event
                  (batch of 1), one recommendation per event
    relay         the passthrough as a live service, until SIGTERM: the latency
                  floor of the Kafka client (`latency.py` measures it beside the worker)

The first two read the events topic from offset 0 with the worker's own client
settings and print one JSON line: events, records produced, seconds from the first
event polled to the last record acknowledged, CPU seconds over that span, peak RSS.

Each goes through the Kafka port on the adapter `--kafka-client` names (default: the
environment's `STREAMREC_KAFKA_CLIENT`, else auto), with librdkafka's habits kept
whichever it is: a poll returns a batch (up to `max_poll_records`), the producer is
polled after each batch's sends (delivery reports are served only there), and
offsets (the next to read, tracked from the records polled) are committed once a
second after a flush, so no offset passes an unsent record.

    python -m streamrec.bench.runners passthrough --bootstrap B --topic T --out O --events N
    python -m streamrec.bench.runners relay --bootstrap B --topic T --out O --port P
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.kafka_io.clients import (
    make_consumer,
    make_producer,
    select_client,
    subscribe_when_known,
)
from streamrec.kafka_io.port import CLIENT_CHOICES, Consumer, Producer, Record, TopicPartition
from streamrec.worker.validate import Event, Limits, validate_event

logger = logging.getLogger(__name__)

POLL_RECORDS = 1024  # the worker's max_poll_records at its default max_batch
BULK_POLL_S = 0.1  # passthrough, naive: a backlog fills a poll at once; the tail waits this
RELAY_POLL_S = 0.005  # relay: see `relay`
STARTUP_POLL_S = 0.05  # relay: until its first records (see `relay`)
RELAY_FETCH_WAIT_MS = 100  # relay: how long the broker may hold an empty fetch
FLUSH_S = 60.0

Polled = dict[TopicPartition, list[Record]]


def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def passthrough(bootstrap: str, topic: str, out: str, group: str, events: int) -> dict[str, Any]:
    """Consume `events` records, decode each, produce one small record per event."""
    consumer = make_consumer(bootstrap, group, "bench-passthrough",
                             max_poll_records=POLL_RECORDS)
    producer = make_producer(bootstrap, "bench-passthrough")
    subscribe_when_known(consumer, topic)
    offsets: dict[TopicPartition, int] = {}
    seen = 0
    start = cpu0 = None
    next_commit = 0.0
    while seen < events:
        polled = consumer.poll(BULK_POLL_S)
        if polled and start is None:
            start, cpu0 = time.perf_counter(), cpu_seconds()
        seen += _forward(polled, producer, out, offsets)
        next_commit = _commit_when_due(producer, consumer, offsets, next_commit)
    _commit_when_due(producer, consumer, offsets, 0.0)
    seconds = time.perf_counter() - start  # type: ignore[operator]
    result = {"events": seen, "records_out": seen, "recommendations": seen,
              "seconds": seconds, "cpu_s": cpu_seconds() - cpu0,  # type: ignore[operator]
              "peak_rss_mb": peak_rss_mb()}
    consumer.close()
    producer.close(FLUSH_S)
    return result


def _forward(polled: Polled, producer: Producer, out: str,
             offsets: dict[TopicPartition, int]) -> int:
    """Decode each polled event and send one small record for it, carrying its `ts` as
    `event_ts` (what the latency consumer reads); note each partition's next offset;
    serve the delivery reports that arrived. Returns how many were sent."""
    sent = 0
    for tp, records in polled.items():
        for rec in records:
            doc = json.loads(rec.value)  # type: ignore[arg-type]
            value = json.dumps({"user_id": doc["user_id"], "event_ts": doc["ts"]}).encode()
            producer.send(out, value, key=rec.key)
            sent += 1
        if records:
            offsets[tp] = records[-1].offset + 1
    if sent:
        producer.poll(0)
    return sent


def _commit_when_due(producer: Producer, consumer: Consumer,
                     offsets: dict[TopicPartition, int], due: float) -> float:
    """Once `due` (monotonic) has passed: flush, then commit the next offsets, so no
    offset passes an unsent record; returns when the next commit is due (a second on)."""
    if time.monotonic() < due:
        return due
    if offsets:
        if not producer.flush(FLUSH_S):
            raise RuntimeError(f"records unacknowledged after {FLUSH_S:.0f}s: not committing")
        consumer.commit(offsets)
        offsets.clear()
    return time.monotonic() + 1.0


def relay(bootstrap: str, topic: str, out: str, group: str, port: int,
          poll_s: float = RELAY_POLL_S, fetch_wait_ms: int = RELAY_FETCH_WAIT_MS) -> None:
    """The passthrough loop as a live service until SIGTERM; /readyz on `port` answers
    200 once partitions are assigned (as the worker's does).

    The poll is short (`poll_s`): librdkafka's batch consume waits for a full batch or
    the whole timeout, so a 100 ms poll at 1,000 events/s would hold each record up to
    100 ms before it is relayed; kafka-python returns as soon as it has records, so
    the short poll costs it only idle wake-ups. Until the first records arrive it
    polls for `STARTUP_POLL_S`: kafka-python 3.0 never finishes looking up its start
    positions when every poll is 5 ms or shorter.
    """
    consumer = make_consumer(bootstrap, group, "bench-relay", max_poll_records=POLL_RECORDS,
                             fetch_max_wait_ms=fetch_wait_ms)
    producer = make_producer(bootstrap, "bench-relay")
    subscribe_when_known(consumer, topic)
    ready, stop = threading.Event(), threading.Event()

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if ready.is_set() else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    offsets: dict[TopicPartition, int] = {}
    next_commit = 0.0
    started = False
    while not stop.is_set():
        polled = consumer.poll(poll_s if started else max(poll_s, STARTUP_POLL_S))
        if not ready.is_set() and consumer.assignment():
            ready.set()
        started = started or bool(polled)
        _forward(polled, producer, out, offsets)
        next_commit = _commit_when_due(producer, consumer, offsets, next_commit)
    _commit_when_due(producer, consumer, offsets, 0.0)
    server.shutdown()
    consumer.close()
    producer.close(FLUSH_S)


def naive(bootstrap: str, topic: str, out: str, group: str, events: int, model: Path,
          backend: str = "auto", threads: int = 0, k: int = 10) -> dict[str, Any]:
    """One encode + search + produce per event, through the worker's own stages."""
    from streamrec.worker.recommend import Recommender
    from streamrec.worker.records import recommendation_json, top_attended
    from streamrec.worker.state.partition import PartitionStore

    recommender = Recommender.load(model, "cpu", backend, threads)
    vocab = recommender.checkpoint.vocab
    names = ["", *vocab.external(np.arange(1, len(vocab) + 1))]
    stores: dict[int, PartitionStore] = {}
    consumer = make_consumer(bootstrap, group, "bench-naive", max_poll_records=POLL_RECORDS)
    producer = make_producer(bootstrap, "bench-naive")
    subscribe_when_known(consumer, topic)
    seen = 0
    start = cpu0 = None
    limits = Limits()
    while seen < events:
        for tp, records in consumer.poll(BULK_POLL_S).items():
            if start is None:
                start, cpu0 = time.perf_counter(), cpu_seconds()
            store = stores.setdefault(tp.partition, PartitionStore(recommender.max_len))
            for rec in records:
                if seen >= events:
                    break
                seen += 1
                event = validate_event(rec.key, rec.value, rec.timestamp, limits)
                if not isinstance(event, Event):
                    continue
                store.append([event.user_id], vocab.rows([event.item_id]),
                             np.array([event.ts]), np.array([rec.offset]))
                rows, lengths = store.rows([event.user_id])
                found = recommender.search(recommender.encode(rows, lengths), rows, k)
                valid = found.rows[0] > 0
                explanation = [(names[r], w) for r, w in
                               top_attended(rows[0], found.attention[0], 3)]
                value = recommendation_json(
                    event.user_id, [names[r] for r in found.rows[0][valid]],
                    found.scores[0][valid], bool(found.popular[0]),
                    recommender.model_version, event.ts, explanation)
                producer.send(out, value, key=rec.key)
            producer.poll(0)
    producer.flush(FLUSH_S)
    seconds = time.perf_counter() - start  # type: ignore[operator]
    result = {"events": seen, "records_out": seen, "recommendations": seen, "seconds": seconds,
              "cpu_s": cpu_seconds() - cpu0, "peak_rss_mb": peak_rss_mb()}  # type: ignore[operator]
    consumer.close()
    producer.close(FLUSH_S)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one runner and print its result as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runner", choices=["passthrough", "naive", "relay"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--events", type=int, default=0, help="passthrough, naive: how many")
    parser.add_argument("--port", type=int, default=0, help="relay: port of /readyz")
    parser.add_argument("--poll-ms", type=float, default=RELAY_POLL_S * 1000,
                        help="relay: poll timeout (default %(default)s)")
    parser.add_argument("--fetch-wait-ms", type=int, default=RELAY_FETCH_WAIT_MS,
                        help="relay: fetch.wait.max.ms (default %(default)s)")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--index", default="auto", help="index backend, as the worker's")
    parser.add_argument("--kafka-client", choices=CLIENT_CHOICES, default=None,
                        help="Kafka adapter (default: env STREAMREC_KAFKA_CLIENT, else auto)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    select_client(args.kafka_client)
    if args.runner == "relay":
        relay(args.bootstrap, args.topic, args.out, args.group, args.port,
              args.poll_ms / 1000, args.fetch_wait_ms)
        return 0
    if args.runner == "passthrough":
        result = passthrough(args.bootstrap, args.topic, args.out, args.group, args.events)
    else:
        result = naive(args.bootstrap, args.topic, args.out, args.group, args.events, args.model,
                       args.index, args.threads)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
