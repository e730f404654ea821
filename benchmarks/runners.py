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

from streamrec.kafka_io.clients import make_consumer, make_producer, subscribe_when_known
from streamrec.worker.validate import Event, Limits, validate_event

logger = logging.getLogger(__name__)

POLL_RECORDS = 1024  # the worker's max_poll_records at its default max_batch


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
    seen = 0
    start = cpu0 = None
    next_commit = 0.0
    while seen < events:
        polled = consumer.poll(timeout_ms=500)
        if polled and start is None:
            start, cpu0 = time.perf_counter(), cpu_seconds()
        seen += _forward(polled, producer, out)
        next_commit = _commit_when_due(producer, consumer, next_commit)
    producer.flush()
    consumer.commit()
    seconds = time.perf_counter() - start  # type: ignore[operator]
    result = {"events": seen, "records_out": seen, "recommendations": seen,
              "seconds": seconds, "cpu_s": cpu_seconds() - cpu0,  # type: ignore[operator]
              "peak_rss_mb": peak_rss_mb()}
    consumer.close(autocommit=False)
    producer.close()
    return result


def _forward(polled: dict[Any, list[Any]], producer: Any, out: str) -> int:
    """Decode each polled event and send one small record for it, carrying its `ts` as
    `event_ts` (what the latency consumer reads); returns how many were sent."""
    sent = 0
    for records in polled.values():
        for rec in records:
            doc = json.loads(rec.value)
            value = json.dumps({"user_id": doc["user_id"], "event_ts": doc["ts"]}).encode()
            producer.send(out, key=rec.key, value=value)
            sent += 1
    return sent


def _commit_when_due(producer: Any, consumer: Any, due: float) -> float:
    """Once `due` (monotonic) has passed: flush, then commit, so no offset passes an
    unsent record; returns when the next commit is due (a second on)."""
    if time.monotonic() < due:
        return due
    producer.flush()
    consumer.commit()
    return time.monotonic() + 1.0


def relay(bootstrap: str, topic: str, out: str, group: str, port: int) -> None:
    """The passthrough loop as a live service until SIGTERM; /readyz on `port` answers
    200 once partitions are assigned (as the worker's does)."""
    consumer = make_consumer(bootstrap, group, "bench-relay", max_poll_records=POLL_RECORDS)
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
    next_commit = 0.0
    while not stop.is_set():
        polled = consumer.poll(timeout_ms=100)
        if consumer.assignment():
            ready.set()
        _forward(polled, producer, out)
        next_commit = _commit_when_due(producer, consumer, next_commit)
    producer.flush()
    server.shutdown()
    consumer.close(autocommit=False)
    producer.close()


def naive(bootstrap: str, topic: str, out: str, group: str, events: int, model: Path,
          backend: str = "auto", threads: int = 0, k: int = 10) -> dict[str, Any]:
    """One encode + search + produce per event, through the worker's own stages."""
    from streamrec.worker.publish import recommendation_json, top_attended
    from streamrec.worker.recommend import Recommender
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
        for tp, records in consumer.poll(timeout_ms=500).items():
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
                producer.send(out, key=rec.key, value=value)
    producer.flush()
    seconds = time.perf_counter() - start  # type: ignore[operator]
    result = {"events": seen, "records_out": seen, "recommendations": seen, "seconds": seconds,
              "cpu_s": cpu_seconds() - cpu0, "peak_rss_mb": peak_rss_mb()}  # type: ignore[operator]
    consumer.close(autocommit=False)
    producer.close()
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
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--index", default="auto", help="index backend, as the worker's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.runner == "relay":
        relay(args.bootstrap, args.topic, args.out, args.group, args.port)
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
