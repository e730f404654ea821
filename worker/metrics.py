"""Prometheus metrics for every arrow of the data flow, and the readiness probe.

One `WorkerMetrics` per worker, on its own `CollectorRegistry` (so tests can run
several workers in one process and read each one's numbers). `serve` exposes it on
`/metrics` over HTTP for Prometheus to scrape, beside `/readyz` and `/healthz`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, ClassVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streamrec.worker.validate import INVALID_REASONS, now_ms

if TYPE_CHECKING:
    from streamrec.kafka_io.port import Consumer
    from streamrec.worker.publish import Acked
    from streamrec.worker.state.durable import Restored
    from streamrec.worker.watchdog import Stall

logger = logging.getLogger(__name__)

# Poll gaps: a turn takes milliseconds; issue 22's bound for a model swap is 100 ms.
POLL_GAP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0)
# Stage latencies: 50 µs .. 5 s.
STAGE_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5, 5.0)
# Event to recommendation: 1 ms .. 60 s.
E2E_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
               10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
STAGES = ("poll", "decode", "histories", "encode", "search", "publish", "commit", "swap")


class WorkerMetrics:
    """All worker metrics, registered on a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "streamrec_events_consumed_total", "Records read from the events topic.",
            ["topic"], registry=r)
        self.events_valid = Counter(
            "streamrec_events_valid_total", "Records that passed validation.", registry=r)
        self.events_invalid = Counter(
            "streamrec_events_invalid_total",
            "Records rejected by validation and sent to the dead-letter topic.",
            ["reason"], registry=r)
        for reason in INVALID_REASONS:
            self.events_invalid.labels(reason)
        self.events_replayed = Counter(
            "streamrec_events_replayed_total",
            "Valid events at or below their user's applied offset (re-read after a crash): "
            "not applied again.", registry=r)
        self.events_skipped = Counter(
            "streamrec_events_skipped_total",
            "Valid events of a type outside --event-types: skipped, not dead-lettered "
            "(the first 16 types are labelled by name, then 'other'; no type: 'untyped').",
            ["type"], registry=r)
        self.unknown_items = Counter(
            "streamrec_unknown_items_total",
            "Valid events whose item is not in the serving model's vocabulary: kept in the "
            "history (the encoder masks it) until a model that knows it is served.",
            registry=r)
        self.unknown_items_held = Gauge(
            "streamrec_unknown_items_held",
            "Distinct items unknown to the serving model held in histories (capped by "
            "--max-unknown-items).", registry=r)
        self.unknown_items_not_kept = Counter(
            "streamrec_unknown_items_not_kept_total",
            "Valid events whose unknown item was not kept because --max-unknown-items "
            "distinct unknown items are held already.", registry=r)
        self.recommendations = Counter(
            "streamrec_recommendations_published_total",
            "Recommendations acknowledged by the broker.", ["strategy"], registry=r)
        for strategy in ("attention", "popular"):
            self.recommendations.labels(strategy)
        self.items_available = Gauge(
            "streamrec_items_available",
            "Items whose latest items-topic record makes them available (recommended once "
            "the serving model knows them).", registry=r)
        self.items_retired = Gauge(
            "streamrec_items_retired",
            "Items whose latest items-topic record retires them (available: false, or a "
            "tombstone): never recommended.", registry=r)
        self.items_added_live = Counter(
            "streamrec_items_added_live_total",
            "Items first seen on the items topic while the worker ran (after its start-up "
            "read of the topic).", registry=r)
        self.items_embedded = Gauge(
            "streamrec_items_embedded",
            "Items unknown to the serving model recommended from their content features "
            "(embedded by its content tower), until a model that learned them is served.",
            registry=r)
        self.items_lag = Gauge(
            "streamrec_items_lag_records",
            "Records of the items topic not read yet (to the high watermarks of its last "
            "fetches).", registry=r)
        self.items_invalid = Counter(
            "streamrec_item_records_invalid_total",
            "Items-topic records that break the item contract, sent to the dead-letter "
            "topic.", ["reason"], registry=r)
        self.dead_letters = Counter(
            "streamrec_dead_letters_published_total",
            "Records acknowledged on the dead-letter topic.", registry=r)
        self.batch_size = Histogram(
            "streamrec_batch_size", "Users per encoder batch.", buckets=BATCH_BUCKETS,
            registry=r)
        self.stage_seconds = Histogram(
            "streamrec_stage_seconds", "Time spent per stage per batch (publish: per slice of "
            "a batch sent in one loop turn).", ["stage"],
            buckets=STAGE_BUCKETS, registry=r)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        self.event_to_rec_seconds = Histogram(
            "streamrec_event_to_recommendation_seconds",
            "From the event's timestamp to the recommendation's acknowledgement.",
            buckets=E2E_BUCKETS, registry=r)
        self.consumer_lag = Gauge(
            "streamrec_consumer_lag_records", "Records behind the end of each partition.",
            ["topic", "partition"], registry=r)
        self.users = Gauge(
            "streamrec_users_in_memory", "Users with a history held by this worker.", registry=r)
        self.pending = Gauge(
            "streamrec_pending_users",
            "Users waiting for their recommendation: for a batch, or in the model stage.",
            registry=r)
        self.inflight = Gauge(
            "streamrec_inflight_records",
            "Records sent (recommendations, dead letters, changelog) and not yet acknowledged.",
            registry=r)
        self.changelog_records = Counter(
            "streamrec_changelog_records_published_total",
            "History records acknowledged on the changelog topic.", registry=r)
        self.restore_records = Counter(
            "streamrec_restore_records_total", "Changelog records read while restoring.",
            registry=r)
        self.restore_seconds = Histogram(
            "streamrec_restore_seconds", "Duration of each restore of assigned partitions.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=r)
        self.restore_rate = Gauge(
            "streamrec_restore_records_per_second", "Changelog records/s of the last restore.",
            registry=r)
        self.restoring = Gauge(
            "streamrec_restoring", "1 while partitions are being restored.", registry=r)
        self.evicted = Counter(
            "streamrec_users_evicted_total",
            "Users dropped from memory by the user cap (their state stays in the changelog).",
            registry=r)
        self.paused = Gauge(
            "streamrec_consumer_paused",
            "1 while fetching is paused because --max-pending users wait for a batch.",
            registry=r)
        self.backpressure_pauses = Counter(
            "streamrec_backpressure_pauses_total",
            "Times fetching paused because the model stage was behind (backlog left in Kafka).",
            registry=r)
        self.model_reloads = Counter(
            "streamrec_model_reloads_total",
            "Model versions of the repository swapped in (ok) or refused (corrupt, "
            "incompatible, half-written: the old model keeps serving).", ["result"],
            registry=r)
        for result in ("ok", "refused"):
            self.model_reloads.labels(result)
        self.online_judged = Counter(
            "streamrec_online_events_total",
            "Live quality sample: new events of users who had been sent a recommendation "
            "(each is judged against the last one they were sent).", ["model_version"],
            registry=r)
        self.online_hits = Counter(
            "streamrec_online_hits_total",
            "Judged events whose item was in that recommendation: hit rate @k = "
            "rate(hits) / rate(events).", ["model_version"], registry=r)
        self.online_ndcg = Counter(
            "streamrec_online_ndcg_total",
            "Sum of NDCG@k over judged events (1 / log2(rank + 2) on a hit, else 0): "
            "NDCG@k = rate(ndcg) / rate(events).", ["model_version"], registry=r)
        self.evicted_index_users = Gauge(
            "streamrec_evicted_users",
            "Users evicted by the cap and not back: their state is only in the changelog.",
            registry=r)
        self.evicted_index_bytes = Gauge(
            "streamrec_evicted_index_bytes",
            "Memory of the index of evicted users' changelog offsets (~16 bytes a user).",
            registry=r)
        self.commit_failures = Counter(
            "streamrec_offset_commit_failures_total",
            "Offset commits that failed (the offsets are taken again at the next commit "
            "interval).", registry=r)
        self.publish_failures = Counter(
            "streamrec_publish_failures_total",
            "Records not acknowledged after the producer's retries (the worker stops rather "
            "than commit past them).", ["kind"], registry=r)
        self.commits = Counter(
            "streamrec_offset_commits_total", "Successful offset commits.", registry=r)
        self.stall_seconds = Gauge(
            "streamrec_stall_seconds",
            "How long the worker has waited to join its group, for a failing or unanswered "
            "commit to succeed, or for progress on work waiting (0 while idle or progressing); it "
            "stops at --max-stall-s.", registry=r)
        self.stalled = Gauge(
            "streamrec_stalled",
            "1 once the worker waited --max-stall-s and stops (/healthz answers 503).",
            registry=r)
        self.model_info = Info(
            "streamrec_model", "What serves, one label each: version (the model version), "
            "items (items the model knows), max_len (its history length), index (the item "
            "index backend), device (the encoder's torch device), kafka_client (the Kafka "
            "adapter, kafka-python or confluent).", registry=r)
        self.index_recall = Gauge(
            "streamrec_index_recall",
            "Recall@10 of the serving item index against exact search, measured when its "
            "model was loaded (1 for an exact index); below --min-recall a model is "
            "refused.", registry=r)
        self.index_recall.set(1.0)
        self.poll_gap = PollGap(Gauge(
            "streamrec_poll_gap_max_seconds",
            "Longest time between two consecutive polls of the worker's loop since it "
            "started: from one poll's return to the next poll's start (a model swap, a "
            "garbage collection or a batch encoded on the loop's thread holds it), not "
            "the time a poll waits for records.", registry=r), Histogram(
            "streamrec_poll_gap_seconds",
            "Times between two consecutive polls of the worker's loop (as the gauge "
            "above): how many were long, in any window two scrapes bound.",
            buckets=POLL_GAP_BUCKETS, registry=r))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this worker no longer owns: a stale value
        would add to every sum of lag over workers."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def count_acked(self, acked: Acked) -> None:
        """Count what the broker acknowledged; latency runs from each event's record
        timestamp to now."""
        for strategy, n in acked.recommendations.items():
            self.recommendations.labels(strategy).inc(n)
        self.dead_letters.inc(acked.dead_letters)
        self.changelog_records.inc(len(acked.changelog))
        acked_ms = now_ms()
        for ts in acked.record_ts:
            self.event_to_rec_seconds.observe(max(0.0, (acked_ms - ts) / 1000.0))

    def observe_restore(self, restored: Restored) -> None:
        """Count one restore of assigned partitions."""
        self.restore_records.inc(restored.records)
        self.restore_seconds.observe(restored.seconds)
        self.restore_rate.set(restored.records / max(restored.seconds, 1e-9))

    def update_lag(self, consumer: Consumer, positions: Mapping[int, int]) -> None:
        """Consumer lag per assigned partition: its high watermark as of the last fetch
        less `positions[partition]`, the next offset the worker reads."""
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            position = positions.get(tp.partition)
            if high is not None and position is not None:
                self.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))

    def observe_quality(self, version: str, judged: int, hits: int, ndcg: float) -> None:
        """Count a poll's live quality sample for the model `version` serving now."""
        self.online_judged.labels(version).inc(judged)
        self.online_hits.labels(version).inc(hits)
        self.online_ndcg.labels(version).inc(ndcg)

    def watch_producer(self, producer: Any) -> None:
        """Export the producer's own retry and error rates (the Kafka client measures them)."""
        self.registry.register(_ProducerRates(producer))

    def serve(
        self, port: int, addr: str = "0.0.0.0", ready: Callable[[], bool] | None = None,
        reload: Callable[[], None] | None = None,
        stalled: Callable[[], Stall | None] | None = None,
    ) -> WSGIServer:
        """Serve /metrics, /readyz and /healthz from a daemon thread; returns the server.

        /readyz answers 200 only while `ready()` is true (partitions assigned and
        restored), 503 otherwise, so an orchestrator routes nothing to a restoring
        worker; /healthz answers 200 while the process serves, 503 (with the reason)
        once `stalled()` names a stall: a liveness probe restarts a worker whose exit
        hangs. `POST /reload` calls `reload()` (check the model repository now:
        `streamrec reload`).
        """
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict, start_response: Callable) -> list[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/reload" and reload is not None:
                if environ.get("REQUEST_METHOD") != "POST":
                    start_response("405 Method Not Allowed", [("Allow", "POST")])
                    return [b"POST to check the model repository now\n"]
                reload()
                start_response("202 Accepted", [("Content-Type", "text/plain")])
                return [b"reload requested: the worker checks its model repository now\n"]
            if path == "/healthz":
                stall = stalled() if stalled is not None else None
                start_response("200 OK" if stall is None else "503 Service Unavailable",
                               [("Content-Type", "text/plain")])
                return [b"ok\n" if stall is None else f"{stall}\n".encode()]
            if path == "/readyz":
                ok = ready is None or ready()
                start_response("200 OK" if ok else "503 Service Unavailable",
                               [("Content-Type", "text/plain")])
                return [b"ok\n" if ok else b"not ready\n"]
            return metrics_app(environ, start_response)

        server = make_server(addr, port, app, _ThreadingServer, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        logger.info("metrics on http://%s:%d/metrics (also /readyz, /healthz)",
                    addr, server.server_port)
        return server


class PollGap:
    """The longest stretch the poll loop spent away from the consumer.

    While the loop is away nothing is fetched, no acknowledgement is counted and no
    batch is cut, for every partition at once: a latency spike no per-stage histogram
    shows whole. The loop calls `polling` as a poll starts and `polled` as it returns
    (their times also time the poll stage); a turn costs one comparison and one
    histogram observation (about a microsecond).
    """

    def __init__(self, gauge: Gauge, histogram: Histogram) -> None:
        self.gauge = gauge
        self.histogram = histogram  # every gap, for windows between two scrapes
        self.longest = 0.0
        self._returned: float | None = None  # when the last poll returned (perf_counter)

    def polling(self) -> float:
        """A poll starts now: note the gap since the last one returned; the time."""
        now = time.perf_counter()
        if self._returned is None:
            return now
        gap = now - self._returned
        self.histogram.observe(gap)
        if gap > self.longest:
            self.longest = gap
            self.gauge.set(gap)
        return now

    def polled(self) -> float:
        """A poll returned now; the time."""
        self._returned = time.perf_counter()
        return self._returned


class _ProducerRates(Collector):
    """The producer's record retry and error rates (`Producer.rates`), at scrape."""

    NAMES: ClassVar[dict[str, str]] = {
        "record-retry-rate": "streamrec_producer_record_retry_rate",
        "record-error-rate": "streamrec_producer_record_error_rate",
    }

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            group = self.producer.rates()
        except Exception:  # a closed producer must not break a scrape
            group = {}
        for source, name in self.NAMES.items():
            family = GaugeMetricFamily(name, f"Producer {source.replace('-', ' ')} per second "
                                             "(measured by the Kafka client).")
            family.add_metric([], float(group.get(source, 0.0) or 0.0))
            yield family


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow client never blocks the next."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: object) -> None:
        return
