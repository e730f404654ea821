"""A real Prometheus scrapes a real worker: the deploy config's promise, end to end.

The unit tests check the files; this one checks that the pieces meet at runtime: a
`prometheus` server (the Debian package's binary) loads the alert rules of
deploy/prometheus/rules.yml, scrapes a worker running against the test broker every
second, and its HTTP API then reports exactly the events that were produced.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from tests.conftest import free_port
from tests.integration.helpers import WorkerThread, event, producer, running
from tests.unit.deploy.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
EVENTS = 60
TIMEOUT_S = 60.0


def api(port: int, path: str, **params: str) -> Any:
    """GET Prometheus's /api/v1/<path>; the `data` of a successful answer."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}{query}",
                                timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def scalar(port: int, query: str) -> float | None:
    """The value of a one-series instant query, None while it has no result."""
    result = api(port, "query", query=query)["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for(what: str, check: Any, timeout_s: float = TIMEOUT_S) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:  # the server is not listening yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; last: {last!r}")


def metrics_port(handle: WorkerThread) -> int:
    """The worker's metrics port, once it has loaded the model and serves /metrics."""
    def port() -> int | None:
        assert handle.alive, f"the worker stopped: {handle.failure}"
        return handle.worker.metrics_port
    return wait_for("the worker's metrics server", port, timeout_s=120)


def start_prometheus(tmp_path: Path, target_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """A Prometheus scraping 127.0.0.1:`target_port` every second, with the real rules."""
    exe = require_tool("prometheus", "Debian: apt-get install prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "streamrec",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }), encoding="utf-8")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the Prometheus this test started (its pid only)."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def test_prometheus_scrapes_the_worker_and_loads_the_rules(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    require_tool("prometheus", "Debian: apt-get install prometheus")
    config = WorkerConfig(
        model_dir=tiny_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=0, metrics_host="127.0.0.1", k=5,
        max_batch=32, device="cpu")
    with running(Worker(config)) as handle:
        process, port = start_prometheus(tmp_path, metrics_port(handle))
        try:
            p = producer(kafka_bootstrap)
            for n in range(EVENTS):
                key, value = event(f"user-{n % 12}", f"i{n % 40 + 1}")
                p.send(topics["events"], key=key, value=value)
            p.flush()
            p.close()

            consumed = 'sum(streamrec_events_consumed_total{job="streamrec"})'
            wait_for(f"{consumed} == {EVENTS}",
                     lambda: scalar(port, consumed) == EVENTS)
            assert scalar(port, 'up{job="streamrec"}') == 1
            published = 'sum(streamrec_recommendations_published_total{job="streamrec"})'
            assert wait_for("recommendations in Prometheus",
                            lambda: scalar(port, published)) >= 1
            expected = {r["alert"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))
                        ["groups"] for r in g["rules"]}

            def rule_health() -> dict[str, str]:
                groups = api(port, "rules")["groups"]
                return {r["name"]: r["health"] for g in groups for r in g["rules"]}
            wait_for("every alert rule loaded and evaluated without error",
                     lambda: rule_health() == dict.fromkeys(expected, "ok"))
        except BaseException:
            print((tmp_path / "prometheus.log").read_text(encoding="utf-8", errors="replace")
                  [-4000:])
            raise
        finally:
            stop(process)
