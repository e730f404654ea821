"""`bench soak`'s pure half: the growth verdict, the windows' latencies, the CSV and the plot.

Synthetic series of a 30-minute soak sampled every 5 s with a restart at 15 minutes:
a flat one must pass, and each kind of growth a soak is meant to catch (memory,
lag, tail latency) must fail on its own check and on no other.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamrec.bench.soak_report import (
    CSV_FIELDS,
    NAN,
    Sample,
    Thresholds,
    judge,
    plot,
    recovered_s,
    summary,
    with_latencies,
    write_csv,
)

RATE = 600.0  # offered events/s: the lag limit is 0.5 s of it per minute, 300 records/min
STEP = 5.0
N = 360  # 30 minutes
RESTART = N // 2


def series(rss: Callable[[float], float] = lambda t: 0.0,
           lag: Callable[[float], float] = lambda t: 0.0,
           p99: Callable[[float], float] = lambda t: 0.0) -> list[Sample]:
    """Samples whose RSS, lag and p99 are a base with some noise plus the given shapes
    (functions of minutes since the soak started), 20 users pending; the worker is down
    for one window at the restart, and the window after it has a large p99 while it
    catches up."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(N):
        t = (i + 1) * STEP
        life = 1 if i < RESTART else 2
        down = i == RESTART
        tail = 3000.0 if i == RESTART + 1 else 80.0 + p99(t / 60) + rng.normal(0, 5)
        out.append(Sample(
            t, life, NAN if down else 700.0 + rss(t / 60) + rng.normal(0, 0.5),
            NAN if down or i == RESTART + 1 else 0.6 + rng.normal(0, 0.02),
            NAN if down else max(0.0, 40.0 + lag(t / 60) + rng.normal(0, 10)),
            NAN if down else 20.0,
            NAN if down else 31_000.0, int(RATE * STEP), int(RATE * STEP * 0.9),
            40.0, tail))
    return out


def life_minutes(m: float) -> float:
    """Minutes since the current worker process started."""
    return m if m <= RESTART * STEP / 60 else m - RESTART * STEP / 60


def test_a_flat_soak_shows_no_growth() -> None:
    verdict = judge(series(), RATE, Thresholds())
    assert (verdict.rss_ok, verdict.backlog_ok, verdict.p99_ok) == (True, True, True)
    assert verdict.word == "no growth"
    assert [x.life for x in verdict.lives] == [1, 2]
    assert verdict.lines()[-1] == "verdict: no growth"


def test_memory_growing_2_mb_per_minute_is_growth_even_after_a_restart() -> None:
    # a leak: the first life grows, the restart frees it, the second grows again
    verdict = judge(series(rss=lambda m: 2.0 * life_minutes(m)), RATE, Thresholds())
    assert verdict.rss_ok is False
    assert (verdict.backlog_ok, verdict.p99_ok) == (True, True)
    assert all(x.rss_mb_per_min == pytest.approx(2.0, abs=0.1) for x in verdict.lives)
    assert verdict.word == "growth"
    assert "GROWS" in verdict.lines()[0]


def test_the_warm_up_of_each_life_is_not_growth() -> None:
    # memory that rises in the first half of each life (new users, restore) then holds
    verdict = judge(series(rss=lambda m: 30.0 * min(life_minutes(m), 5.0)), RATE, Thresholds())
    assert verdict.rss_ok is True


def test_a_backlog_building_up_is_growth() -> None:
    verdict = judge(series(lag=lambda m: 600.0 * m), RATE, Thresholds())  # 1 s of input/min
    assert verdict.backlog_limit_per_min == pytest.approx(300.0)
    assert verdict.backlog_ok is False
    assert (verdict.rss_ok, verdict.p99_ok) == (True, True)


def test_a_tail_that_widens_is_growth_and_a_restart_spike_is_not() -> None:
    verdict = judge(series(p99=lambda m: 10.0 * m), RATE, Thresholds())  # 80 -> 380 ms
    assert verdict.p99_ok is False
    assert verdict.p99_last_ms > 2 * verdict.p99_first_ms
    assert judge(series(), RATE, Thresholds(p99_factor=2.0)).p99_ok is True  # spike at 15 min


def test_a_soak_too_short_to_fit_is_inconclusive() -> None:
    verdict = judge(series()[:4], RATE, Thresholds())
    assert verdict.rss_ok is None
    assert verdict.word == "inconclusive"


def test_latency_recovers_after_the_window_that_caught_up() -> None:
    samples = series()
    verdict = judge(samples, RATE, Thresholds())
    restart_s = samples[RESTART - 1].t_s + 1.0
    # the window the worker was down in has no arrivals, the next one is slow
    assert recovered_s(samples, restart_s, verdict) == samples[RESTART + 2].t_s


def test_windows_get_the_latencies_of_the_recommendations_that_arrived_in_them() -> None:
    samples = [Sample(t, 1, 700.0, 0.5, 0.0, 0.0, 10.0, 100) for t in (5.0, 10.0, 15.0)]
    start_ms = 1_000_000.0
    arrival = start_ms + np.array([100.0, 4_999.0, 5_000.0, 7_000.0, 20_000.0])
    latency = np.array([10.0, 30.0, 200.0, 400.0, 5.0])  # the last arrived after the soak
    out = with_latencies(samples, start_ms, arrival, latency)
    assert [s.recs for s in out] == [2, 2, 0]
    assert out[0].p50_ms == pytest.approx(20.0)
    assert out[1].p99_ms == pytest.approx(398.0)
    assert math.isnan(out[2].p99_ms)


def test_csv_and_plot_are_written_from_the_series(tmp_path: Path) -> None:
    samples = series()
    path = tmp_path / "bench" / "soak-test.csv"
    write_csv(path, samples)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS
    assert len(rows) == N
    assert float(rows[0]["t_s"]) == STEP
    assert rows[RESTART]["rss_mb"] == ""  # the worker was down: an empty cell, not "nan"
    assert int(rows[-1]["life"]) == 2
    png = tmp_path / "bench" / "soak-test.png"
    plot(png, samples, RESTART * STEP, "synthetic")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = summary(samples, judge(samples, RATE, Thresholds()))
    assert table.count("\n") == 3  # header, rule, one row per life
