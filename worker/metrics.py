"""Prometheus metrics for every arrow of the data flow.

One `WorkerMetrics` per worker, on its own `CollectorRegistry` (so tests can run
several workers in one process and read each one's numbers). `serve` exposes it on
`/metrics` over HTTP for Prometheus to scrape.
"""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)

from streamrec.worker.validate import INVALID_REASONS

logger = logging.getLogger(__name__)

# Stage latencies: 50 µs .. 5 s.
STAGE_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5, 5.0)
# Event to recommendation: 1 ms .. 60 s.
E2E_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
               10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
STAGES = ("poll", "decode", "histories", "encode", "search", "publish", "commit")


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
        self.unknown_items = Counter(
            "streamrec_unknown_items_total",
            "Valid events whose item is not in the model's vocabulary (not added to history).",
            registry=r)
        self.recommendations = Counter(
            "streamrec_recommendations_published_total",
            "Recommendations acknowledged by the broker.", ["strategy"], registry=r)
        for strategy in ("attention", "popular"):
            self.recommendations.labels(strategy)
        self.dead_letters = Counter(
            "streamrec_dead_letters_published_total",
            "Records acknowledged on the dead-letter topic.", registry=r)
        self.batch_size = Histogram(
            "streamrec_batch_size", "Users per encoder batch.", buckets=BATCH_BUCKETS,
            registry=r)
        self.stage_seconds = Histogram(
            "streamrec_stage_seconds", "Time spent per stage per batch.", ["stage"],
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
            "streamrec_pending_users", "Users waiting for a batch.", registry=r)
        self.commits = Counter(
            "streamrec_offset_commits_total", "Successful offset commits.", registry=r)
        self.model_info = Info(
            "streamrec_model", "The loaded model: version, items, dims.", registry=r)

    def serve(self, port: int, addr: str = "0.0.0.0") -> WSGIServer:
        """Start the /metrics HTTP server in a daemon thread; returns it for shutdown."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        logger.info("metrics on http://%s:%d/metrics", addr, server.server_port)
        return server
