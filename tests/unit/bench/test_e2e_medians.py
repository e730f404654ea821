"""bench e2e's latency rounds: medians per load and target, and the worker's ratio to
the relay at each load taken from the medians, not from one round."""

from __future__ import annotations

import pytest

from streamrec.bench.e2e import E2EOptions, _medians, latency_medians


def run(load: float, target: str, round_no: int, p99_after: float, p50: float = 10.0) -> dict:
    return {"load": load, "target": target, "round": round_no, "p50": p50,
            "p99_after": p99_after}


def test_medians_per_load_and_target_and_the_ratio_of_the_medians() -> None:
    runs = [run(0.5, "worker", 0, 76.0, p50=30.0), run(0.5, "relay", 0, 15.0),
            run(0.5, "worker", 1, 41.0, p50=20.0), run(0.5, "relay", 1, 31.0),
            run(0.5, "worker", 2, 48.0, p50=22.0), run(0.5, "relay", 2, 16.0),
            run(0.1, "worker", 0, 30.0), run(0.1, "relay", 0, 12.0)]
    rows = {(r["load"], r["target"]): r for r in latency_medians(runs)}
    worker = rows[(0.5, "worker")]
    assert worker["rounds"] == 3
    assert worker["p99_after"] == 48.0  # not the mean (55), not the last round's
    assert worker["p50"] == 22.0
    assert worker["p99_after_rounds"] == [76.0, 41.0, 48.0]  # in round order
    assert rows[(0.5, "relay")]["p99_after"] == 16.0
    assert worker["ratio_to_relay"] == pytest.approx(3.0)  # 48 / 16: medians, not 41 / 31
    assert rows[(0.1, "worker")]["ratio_to_relay"] == pytest.approx(2.5)
    assert "ratio_to_relay" not in rows[(0.5, "relay")]
    text = _medians(latency_medians(runs))
    assert "at 50%, the worker 48 ms (76, 41, 48) against the relay's 16 ms (15, 31, 16): 3.0 ×" \
        in text
    assert "Medians over the 3 rounds" in text


def test_at_least_one_round() -> None:
    with pytest.raises(ValueError, match="latency_repeats"):
        E2EOptions(latency_repeats=0)
