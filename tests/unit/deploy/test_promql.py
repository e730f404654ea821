"""The PromQL name extraction the dashboard and rule tests rely on: it must find every
metric and nothing else, or those tests pass or fail for the wrong reason."""

from __future__ import annotations

import pytest

from tests.unit.deploy.promql import metric_names


@pytest.mark.parametrize(("expr", "names"), [
    ("up", {"up"}),
    ('up{job="streamrec"} == 0', {"up"}),
    ("rate(streamrec_events_consumed_total[5m])", {"streamrec_events_consumed_total"}),
    ('sum by (job, le) (rate(a_bucket{instance=~"$instance"}[$__rate_interval]))',
     {"a_bucket"}),
    ("histogram_quantile(0.99, sum(rate(a_bucket[5m])) by (le)) > 0.25", {"a_bucket"}),
    ("sum by (job) (rate(a_total[5m])) / sum by (job) (rate(b_total[5m])) > 5e-2",
     {"a_total", "b_total"}),
    ("a and on (job) b unless ignoring (x) c or d", {"a", "b", "c", "d"}),
    ("x * on (job) group_left (version) streamrec_model_info", {"x", "streamrec_model_info"}),
    ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
    ("max_over_time(a[15m:1m]) offset 1d", {"a"}),
    ("sum(rate(a[${__range}])) or vector(0)", {"a"}),
    ('count({__name__=~"streamrec_.+"})', set()),
    ("ns:metric:rate5m > bool 0", {"ns:metric:rate5m"}),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_label_names_and_values_are_not_metrics() -> None:
    expr = 'sum by (topic) (streamrec_consumer_lag_records{topic="events", partition!="0"})'
    assert metric_names(expr) == {"streamrec_consumer_lag_records"}
