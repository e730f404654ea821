"""`streamrec bench soak` runs end to end at toy size: a real worker on the real broker,
restarted midway in the same group, sampled, judged and reported.

The verdict itself is not asserted (a 24-second soak of a shared test box says
nothing about leaks); what is checked is that the worker came back after the
SIGTERM, that every window was sampled and recommendations arrived on both sides
of the restart, and that the CSV, the plot and the section were written.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from streamrec.bench import report
from streamrec.bench.soak import SoakOptions
from streamrec.bench.soak import run as run_soak

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_soak_restarts_the_worker_and_reports(
    kafka_bootstrap: str, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "DOCS", tmp_path / "docs")
    verdict = run_soak(SoakOptions(
        minutes=0.4, rate=100.0, sample_s=2.0, events=2000, measure_events=0,
        partitions=2, model=tiny_checkpoint, bootstrap=kafka_bootstrap,
        workdir=tmp_path / "work"))
    assert verdict.word in {"no growth", "growth", "inconclusive"}
    assert [x.life for x in verdict.lives] == [1, 2]  # the worker came back after SIGTERM
    out = tmp_path / "docs" / "bench"
    with next(out.glob("soak-*.csv")).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12  # 24 s in windows of 2 s
    for life in ("1", "2"):
        assert sum(int(r["recs"]) for r in rows if r["life"] == life) > 0
    assert next(out.glob("soak-*.png")).stat().st_size > 0
    text = (tmp_path / "docs" / "BENCHMARKS.md").read_text()
    assert ": bench soak (" in text
    assert "SIGTERM 12 s in" in text
    assert "verdict: " in text
