"""The helpers the deploy tests judge files with: if they accepted anything, every deploy
test would pass vacuously, so each must be shown to reject what it should."""

from __future__ import annotations

import pytest

from tests.unit.deploy.surface import env_problems, exported_metric_names, parse
from tests.unit.deploy.tools import require_tool


def test_exported_names_include_labelled_metrics_before_their_first_sample() -> None:
    names = exported_metric_names()
    for name in ("streamrec_events_consumed_total", "streamrec_consumer_lag_records",
                 "streamrec_publish_failures_total", "streamrec_model_info",
                 "streamrec_event_to_recommendation_seconds_bucket",
                 "streamrec_producer_record_error_rate", "up"):
        assert name in names
    for name in ("streamrec_events_consumed", "streamrec_model", "streamrec_users_in_memory_total",
                 "streamrec_hit_rate"):
        assert name not in names


def test_env_problems_accepts_real_settings() -> None:
    env = {"STREAMREC_MODEL": "/models", "STREAMREC_METRICS_PORT": "9108",
           "STREAMREC_EXACTLY_ONCE": "true", "STREAMREC_SASL_PASSWORD": "x",
           "STREAMREC_SECURITY_PROTOCOL": "SASL_SSL", "PATH": "/usr/bin"}
    assert env_problems("worker", env) == []


@pytest.mark.parametrize(("command", "env", "why"), [
    ("worker", {"STREAMREC_METRIC_PORT": "9108"}, "has no flag --metric-port"),
    ("worker", {"STREAMREC_K": "ten"}, "is not valid for --k"),
    ("worker", {"STREAMREC_SECURITY_PROTOCOL": "TLS"}, "invalid choice"),
    ("worker", {"STREAMREC_FROM_TOPIC": "events"}, "has no flag --from-topic"),
    ("train", {"STREAMREC_OUT": "/models"}, "does not read it"),
    ("train", {"STREAMREC_FROM_TOPIC": "events"}, "does not read it"),
    ("train", {"STREAMREC_METRICS_PORT": "9108"}, "has no flag --metrics-port"),
])
def test_env_problems_rejects(command: str, env: dict[str, str], why: str) -> None:
    (problem,) = env_problems(command, env)
    assert why in problem


def test_parse_reports_unknown_flags_instead_of_exiting() -> None:
    assert parse(["worker", "--k", "3"]).k == 3
    with pytest.raises(ValueError, match="unrecognized arguments: --nope"):
        parse(["worker", "--nope"])
    with pytest.raises(ValueError, match="required: --out"):
        parse(["train", "--from-topic", "events"])


def test_a_missing_tool_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="promtool is not installed"):
        require_tool("promtool", "apt-get install prometheus")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_tool("promtool", "apt-get install prometheus")
