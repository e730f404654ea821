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

import numpy as np
import pytest

from streamrec.bench import latency as latency_run
from streamrec.bench import report
from streamrec.bench.contenders import Stream, load_stream
from streamrec.bench.soak import SoakOptions
from streamrec.bench.soak import run as run_soak
from streamrec.bench.soak_rate import cycled_histories, fill_changelog
from streamrec.encoder.checkpoint import read_model_config
from streamrec.worker.state.changelog import changelog_topic, decode_history
from tests.integration.helpers import consume_until

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
    cycle_users = len(set(load_stream(2000, SoakOptions().users).users))
    assert float(rows[0]["users"]) == cycle_users  # restored full before the first event
    for life in ("1", "2"):
        assert sum(int(r["recs"]) for r in rows if r["life"] == life) > 0
    assert next(out.glob("soak-*.png")).stat().st_size > 0
    text = (tmp_path / "docs" / "BENCHMARKS.md").read_text()
    assert ": bench soak (" in text
    assert "SIGTERM 12 s in" in text
    assert "The first life starts from every user's history as the cycle leaves it" in text
    assert "verdict: " in text


def test_a_probe_worker_starts_from_the_histories_the_cycle_leaves(
    kafka_bootstrap: str, tiny_checkpoint: Path, tmp_path: Path,
) -> None:
    """The probes of the soak's rate measure full histories: the worker restores the
    filled changelog (each user in its events' partition) before it serves."""
    users = [f"u{n}" for n in range(10)]
    items = [f"i{1 + n}" for n in range(30)]  # each user 3 distinct items a cycle
    cycle = Stream(users * 3, items, np.arange(30, dtype=np.int64), "test")
    max_len = read_model_config(tiny_checkpoint).max_len
    filled = cycled_histories(cycle, len(cycle), max_len)
    groups: list[str] = []

    def prepare(group: str) -> None:
        groups.append(group)
        fill_changelog(kafka_bootstrap, group, filled, partitions=2)

    lat = latency_run.measure(kafka_bootstrap, tiny_checkpoint, cycle, 20.0, 2.0, 2,
                              tmp_path, prepare=prepare)
    assert 0 < lat.sent <= 40  # at most 4 events a user: fewer than max_len (8)
    records = consume_until(kafka_bootstrap, changelog_topic(groups[0]), lambda rs: False,
                            timeout_s=5)
    latest = {r.key.decode(): decode_history(r.value) for r in records}
    served = set(cycle.users[:lat.sent])
    assert served
    assert all(latest[u].offset >= 0 for u in served)  # written by the worker
    for user in served:  # the filled history, moved on by this run's events
        assert len(latest[user].items) == max_len, latest[user]
        assert set(latest[user].items) == set(filled[user])
