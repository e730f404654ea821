"""The maximum live load's search (benchmarks/capacity.py) on a simulated worker."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.bench.capacity import KEEPS_UP_MS, judge, live_maximum
from streamrec.bench.latency import Latency

SECONDS = 30.0


def simulated(capacity: float, startup_ms: float = 0.0):
    """A worker that answers in 20 ms below `capacity` events/s and, above it, falls
    behind by the excess: an event sent at t waits t * (rate / capacity - 1)."""
    tried: list[float] = []

    def run(rate: float) -> Latency:
        tried.append(rate)
        sent_ms = np.arange(0.0, SECONDS * 1000, 10.0) + 1_700_000_000_000
        t = (sent_ms - sent_ms[0]) / 1000
        behind = np.maximum(0.0, t * (rate / capacity - 1)) * 1000
        backlog = np.maximum(0.0, startup_ms - t * 1000 * (capacity / rate - 1))
        return Latency(rate, SECONDS, len(sent_ms), 20.0 + behind + backlog,
                       sent_ms=sent_ms.astype(np.int64))

    return run, tried


def test_it_steps_up_until_a_rate_is_lost_then_tries_the_middle_once() -> None:
    run, tried = simulated(10_000)
    best, probes = live_maximum(run, 6_000, say=lambda _: None)
    assert tried == pytest.approx([6_000, 7_500, 9_375, 11_718.75, np.sqrt(9_375 * 11_718.75)])
    assert [p.kept_up for p in probes] == [True, True, True, False, False]
    assert best == 9_375  # within STEP's square root (12%) below the true 10,000


def test_it_steps_down_from_a_rate_it_cannot_keep() -> None:
    run, tried = simulated(10_000)
    best, _ = live_maximum(run, 20_000, say=lambda _: None)
    assert tried[:5] == pytest.approx([20_000, 16_000, 12_800, 10_240, 8_192])
    assert best == pytest.approx(np.sqrt(8_192 * 10_240))  # the middle, kept up with


def test_a_rate_a_few_percent_too_high_is_lost_and_a_slow_start_is_not() -> None:
    run, _ = simulated(10_000, startup_ms=700)
    assert not judge(run(10_400)).kept_up  # 4% too much: 1.1 s behind after 30 s
    assert judge(run(9_000)).tail_p50 < KEEPS_UP_MS  # the 700 ms start caught up at 6 s
    assert judge(run(9_700)).kept_up  # caught up at 23 s: judged by the end, not the whole


def test_no_rate_kept_up_with_gives_zero() -> None:
    run, tried = simulated(10)
    best, probes = live_maximum(run, 100_000, say=lambda _: None)
    assert best == 0.0
    assert len(tried) == len(probes) == 6
