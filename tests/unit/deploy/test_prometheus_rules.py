"""The Prometheus config and alert rules are valid, tested and read only real metrics.

`promtool` checks both config files (which also loads the rules they name), lints the
rules and runs their unit tests (rules_test.yml). The metric check catches an alert on
a metric the worker never exports, which Prometheus would accept and never fire.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.promql import metric_names
from tests.unit.deploy.surface import DEPLOY, METRICS_PORT, exported_metric_names
from tests.unit.deploy.tools import require_tool

PROMETHEUS = DEPLOY / "prometheus"
CONFIGS = ("prometheus.yml", "prometheus.compose.yml")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    exe = require_tool("promtool", "Debian: apt-get install prometheus")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "rules.yml").read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("config", CONFIGS)
def test_promtool_check_config_from_the_repo_root(config: str) -> None:
    """Run from the repo root as the config's header says: rule_files must still resolve."""
    result = promtool("check", "config", f"deploy/prometheus/{config}", cwd=DEPLOY.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules() -> None:
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule whose threshold moved must break its test: the suite tests the thresholds."""
    rules = (PROMETHEUS / "rules.yml").read_text(encoding="utf-8")
    assert "> 0.25" in rules
    (tmp_path / "rules.yml").write_text(rules.replace("> 0.25", "> 0.75"), encoding="utf-8")
    (tmp_path / "rules_test.yml").write_text(
        (PROMETHEUS / "rules_test.yml").read_text(encoding="utf-8"), encoding="utf-8")
    result = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "StreamrecLatencyHigh" in result.stdout + result.stderr


def test_every_rule_reads_only_exported_metrics() -> None:
    exported = exported_metric_names()
    for rule in load_rules():
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']} reads metrics the worker does not export: {unknown}"


def test_every_alert_has_severity_summary_and_runbook() -> None:
    rules = load_rules()
    assert len({r["alert"] for r in rules}) == len(rules), "alert names must be unique"
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        for key in ("summary", "runbook"):
            text = rule["annotations"].get(key, "").strip()
            assert text, f"{rule['alert']}: no {key}"
            assert "\n" not in text, f"{rule['alert']}: {key} must be one line"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["rules.yml"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {r["alert"] for r in load_rules()}
    assert fires == alerts
    assert quiet == alerts


@pytest.mark.parametrize("config", CONFIGS)
def test_configs_scrape_the_worker_metrics_port_with_the_rules(config: str) -> None:
    doc = yaml.safe_load((PROMETHEUS / config).read_text(encoding="utf-8"))
    assert doc["rule_files"] == ["rules.yml"]
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "streamrec"  # the alerts select job="streamrec"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets
    assert all(t.rsplit(":", 1)[1] == str(METRICS_PORT) for t in targets)
