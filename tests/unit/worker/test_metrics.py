"""Metrics that must not outlive what they describe."""

from __future__ import annotations

from streamrec.worker.metrics import WorkerMetrics


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
