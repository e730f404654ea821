"""`streamrec bench` runs end to end at toy sizes and writes its report.

The figures themselves are never asserted (they belong in docs/BENCHMARKS.md, not in
a test); what is checked is that every contender ran over the real broker, that
each user's last event got a recommendation, and that the section, its table and
its plots were written where the report goes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.bench import report
from streamrec.bench.e2e import E2EOptions
from streamrec.bench.e2e import run as run_e2e
from streamrec.bench.state import StateOptions
from streamrec.bench.state import run as run_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The report and plots go to a temporary docs folder, not the repository's."""
    monkeypatch.setattr(report, "DOCS", tmp_path)
    return tmp_path


def test_bench_state_restores_every_user_and_reports(kafka_bootstrap: str, docs: Path) -> None:
    assert run_state(StateOptions(users=3000, history=5, partitions=2,
                                  bootstrap=kafka_bootstrap))
    text = (docs / "BENCHMARKS.md").read_text()
    assert ": bench state" in text
    assert "| 3,000 | 5 |" in text
    assert "| yes |" in text


def test_bench_state_cap_serves_every_user_and_reports_the_index(
    kafka_bootstrap: str, tiny_checkpoint: Path, docs: Path, tmp_path: Path,
) -> None:
    assert run_state(StateOptions(users=0, cap_users=3000, max_users=20, partitions=2,
                                  bootstrap=kafka_bootstrap, model=tiny_checkpoint,
                                  workdir=tmp_path, worker_args=("--commit-interval-ms", "20")))
    text = (docs / "BENCHMARKS.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 3,000 | 300 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "20 x 2"
    # The cap applies at each commit: memory holds the cap plus the users since the last.
    assert int(cells[3].replace(",", "")) < 1000
    assert int(cells[4].replace(",", "")) > 2000  # users were evicted
    assert float(cells[5]) <= 110  # index bytes per evicted user (all still in the buffer)
    assert cells[-1] == "yes"


def test_bench_e2e_runs_every_contender_and_reports(
    kafka_bootstrap: str, tiny_checkpoint: Path, docs: Path, tmp_path: Path,
) -> None:
    figures = run_e2e(E2EOptions(
        events=2000, users=300, naive_events=200, latency_seconds=3.0, latency_loads=(0.5,),
        latency_repeats=2, sweep=(64,),
        sweep_events=500, model=tiny_checkpoint, workdir=tmp_path / "work",
        bootstrap=kafka_bootstrap))
    assert figures["b_users_missing"] == 0
    assert figures["e_users_missing"] == 0
    assert figures["b'_users_missing"] == 0
    results = figures["results"]
    assert set(results) >= {"a", "b", "b'", "c", "d1", "d'", "e"}
    assert results["b'"]["events"] == results["d'"]["events"] == figures["distinct_events"]
    for key in ("a", "b", "e"):
        assert results[key]["events"] == 2000
        assert results[key]["seconds"] > 0
    assert results["c"]["events"] == 200
    # the worker and the client's floor, each at the same offered rate
    # ... in rounds, each round the worker and then the relay
    assert [(x["load"], x["target"], x["round"]) for x in figures["latency"]] == [
        (0.5, "worker", 0), (0.5, "relay", 0), (0.5, "worker", 1), (0.5, "relay", 1)]
    assert [(m["target"], m["rounds"]) for m in figures["latency_medians"]] == [
        ("worker", 2), ("relay", 2)]
    for run in figures["latency"]:
        assert run["received"] > 0
        assert run["received"] <= run["sent"]
    assert [s["max_batch"] for s in figures["sweep"]] == [64]
    text = (docs / "BENCHMARKS.md").read_text()
    assert ": bench e2e" in text
    assert "| b: worker |" in text
    assert "relay (client floor)" in text
    assert "Medians over the 2 rounds" in text
    for plot in ("latency_cdf", "max_batch"):  # this run's own files, linked from its section
        [png] = (docs / "bench").glob(f"{plot}-*.png")
        assert png.stat().st_size > 0
        assert f"(bench/{png.name})" in text
