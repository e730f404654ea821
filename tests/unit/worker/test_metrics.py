"""Metrics that must not outlive what they describe, and the probes beside them."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.watchdog import Stall


def lag_series(m: WorkerMetrics) -> set[tuple[str, str]]:
    return {(s.labels["topic"], s.labels["partition"])
            for family in m.registry.collect() if family.name == "streamrec_consumer_lag_records"
            for s in family.samples}


def test_a_partition_that_moved_away_leaves_no_lag_series() -> None:
    m = WorkerMetrics()
    m.consumer_lag.labels("events", "0").set(5)
    m.consumer_lag.labels("events", "1").set(7)
    m.forget_partition("events", 1)
    m.forget_partition("events", 9)  # never reported: nothing to drop, no error
    assert lag_series(m) == {("events", "0")}


def status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_answers_503_with_the_reason_once_the_worker_stalled() -> None:
    stall: list[Stall] = []
    server = WorkerMetrics().serve(0, "127.0.0.1", ready=lambda: True,
                                   stalled=lambda: stall[0] if stall else None)
    try:
        port = server.server_port
        assert status(port, "/healthz") == (200, "ok\n")
        stall.append(Stall(61.0, "an assignment from group 'g'"))
        code, body = status(port, "/healthz")
        assert code == 503
        assert body == "stalled: waited 61s for an assignment from group 'g'\n"
        assert status(port, "/readyz")[0] == 200  # readiness is another question
    finally:
        server.shutdown()
        server.server_close()


def gauge_value(m: WorkerMetrics, name: str) -> float:
    return next(s.value for family in m.registry.collect() for s in family.samples
                if s.name == name)


def test_the_poll_gap_gauge_keeps_the_slowest_turn_between_two_polls() -> None:
    m = WorkerMetrics()
    gap = m.poll_gap
    start = gap.polling()  # the first poll: no gap before it
    time.sleep(0.2)  # a poll waiting for records is not a gap
    assert gap.polled() - start >= 0.2
    assert gauge_value(m, "streamrec_poll_gap_max_seconds") == 0.0
    time.sleep(0.06)  # a slow turn of the loop, e.g. a model swap
    gap.polling()
    gap.polled()
    gap.polling()  # a quick turn does not lower the longest
    slowest = gauge_value(m, "streamrec_poll_gap_max_seconds")
    assert 0.06 <= slowest < 0.2
    assert gap.longest == slowest


def test_the_poll_gap_histogram_counts_every_gap_and_no_poll_wait() -> None:
    m = WorkerMetrics()
    gap = m.poll_gap
    gap.polling()
    time.sleep(0.12)  # waiting inside a poll: not a gap
    gap.polled()
    time.sleep(0.06)  # a slow turn
    gap.polling()
    gap.polled()
    gap.polling()  # a quick one
    samples = {(s.name, s.labels.get("le")): s.value for family in m.registry.collect()
               for s in family.samples if s.name.startswith("streamrec_poll_gap_seconds")}
    assert samples[("streamrec_poll_gap_seconds_count", None)] == 2
    assert samples[("streamrec_poll_gap_seconds_bucket", "0.05")] == 1  # the quick turn
    assert samples[("streamrec_poll_gap_seconds_bucket", "0.1")] == 2  # and the slow one
    assert 0.06 <= samples[("streamrec_poll_gap_seconds_sum", None)] < 0.1
