"""The Grafana dashboard loads, shows what an operator needs, and reads only real metrics.

Grafana accepts a panel on a misspelled metric and just draws nothing; these checks
turn that into a failing test: every expression is valid PromQL (promtool compiles
it as a recording rule) and reads only series the worker exports.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.promql import metric_names
from tests.unit.deploy.surface import DEPLOY, exported_metric_names
from tests.unit.deploy.tools import require_tool

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "streamrec.json"

# What an operator looks for first, each by a metric its panel must read.
REQUIRED = {
    "events consumed": "streamrec_events_consumed_total",
    "recommendations published": "streamrec_recommendations_published_total",
    "consumer lag": "streamrec_consumer_lag_records",
    "latency percentiles": "streamrec_event_to_recommendation_seconds_bucket",
    "batch size": "streamrec_batch_size_bucket",
    "dead letters": "streamrec_events_invalid_total",
    "users in memory": "streamrec_users_in_memory",
    "model version": "streamrec_model_info",
}

# Grafana's variables, as Prometheus would see them after substitution.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                     "$instance": ".*"}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in panels(dashboard) if p["type"] != "row"]


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query, panel targets and template variables."""
    found = [(p["title"], t["expr"]) for p in data_panels(dashboard) for t in p["targets"]]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            inner = query.removeprefix("label_values(").rsplit(",", 1)[0]
            found.append((f"variable {var['name']}", inner))
    return found


def test_dashboard_is_valid_json_with_a_prometheus_datasource_variable() -> None:
    dashboard = load()
    assert dashboard["uid"]
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in data_panels(dashboard):
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources), (
            panel["title"])


def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    dashboard = load()
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_panel_queries_something() -> None:
    for panel in data_panels(load()):
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_every_expression_reads_only_exported_metrics() -> None:
    exported = exported_metric_names()
    for title, expr in expressions(load()):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= exported, f"{title}: not exported by the worker: {names - exported}"


def test_the_dashboard_shows_what_operators_need() -> None:
    read = set().union(*(metric_names(expr) for _, expr in expressions(load())))
    missing = {what: metric for what, metric in REQUIRED.items() if metric not in read}
    assert not missing


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool compiles each query (Grafana variables substituted) as a recording rule."""
    rules = []
    for n, (_title, expr) in enumerate(expressions(load())):
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"streamrec:dashboard_query_{n}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                    encoding="utf-8")
    exe = require_tool("promtool", "Debian: apt-get install prometheus")
    result = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", ["datasources/prometheus.yml", "dashboards/streamrec.yml"])
def test_provisioning_files(path: str) -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / path).read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    if path.startswith("datasources"):
        (source,) = doc["datasources"]
        assert source["type"] == "prometheus"
        assert source["uid"] == "prometheus"
    else:
        (provider,) = doc["providers"]
        assert provider["type"] == "file"
        assert provider["options"]["path"]
