"""`bench catalogue`'s hot swap, its pure half: reading /metrics samples, the latency
windows, the verdict on the longest gap between two polls, and the repository it
publishes into (no broker, no worker)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from prometheus_client.samples import Sample

from streamrec.bench.hot_swap import GAP, SwapRun, metric, publish
from streamrec.bench.latency import Latency, window
from streamrec.encoder import repository


def test_metric_sums_the_samples_whose_labels_match() -> None:
    samples = [Sample(GAP, {}, 0.03),
               Sample("streamrec_stage_seconds_sum", {"stage": "swap"}, 0.02),
               Sample("streamrec_stage_seconds_sum", {"stage": "poll"}, 9.0),
               Sample("streamrec_model_reloads_total", {"result": "ok"}, 1.0)]
    assert metric(samples, GAP) == 0.03
    assert metric(samples, "streamrec_stage_seconds_sum", stage="swap") == 0.02
    assert metric(samples, "streamrec_stage_seconds_sum") == 9.02
    assert metric(samples, "streamrec_model_reloads_total", result="refused") == 0.0


def test_a_window_holds_the_events_sent_within_it() -> None:
    sent_ms = np.arange(1000.0, 2000.0)  # one event a ms
    ms = np.where(sent_ms < 1500, 10.0, 200.0)  # latency jumps at 1.5 s
    before, after = window(ms, sent_ms, 1000, 1500), window(ms, sent_ms, 1500, 2000)
    assert (before.events, before.p99, before.max) == (500, 10.0, 10.0)
    assert (after.events, after.p50) == (500, 200.0)
    empty = window(ms, sent_ms, 5000, 6000)
    assert empty.events == 0
    assert math.isnan(empty.p99)
    run = Latency(rate=1000.0, seconds=1.0, sent=1000, ms=ms, sent_ms=sent_ms)
    assert run.summary() == window(ms, sent_ms, 0, 1e18)
    assert run.summary(0.5) == after  # the events sent half a second in or later


def test_the_gap_of_the_swap_is_the_gauges_rise_else_bounded_by_its_value_before() -> None:
    loading = SwapRun(rate=100.0, result="ok", gap_before_s=0.02, gap_loading_s=0.15,
                      gap_after_s=0.15, swap_s=0.01)
    assert loading.gap_s == 0.15
    assert loading.verdict(0.1).endswith(
        "150 ms, while the new version loaded on its thread: missed (target ≤ 100 ms)")
    swapping = SwapRun(rate=100.0, result="ok", gap_before_s=0.02, gap_loading_s=0.03,
                       gap_after_s=0.08, swap_s=0.07)
    assert "80 ms, at the swap (within the 0.2 s before it was counted): met" in (
        swapping.verdict(0.1))
    flat = SwapRun(rate=100.0, result="ok", gap_before_s=0.04, gap_after_s=0.04)
    assert flat.gap_s is None
    assert "no gap during the swap was longer: met" in flat.verdict(0.1)
    start_up = SwapRun(rate=100.0, result="ok", gap_before_s=0.3, gap_after_s=0.3, swap_s=0.02)
    assert start_up.verdict(0.1).startswith("inconclusive")
    assert "held the loop 20 ms" in start_up.verdict(0.1)
    assert SwapRun(rate=1.0, result="refused").verdict(0.1).startswith("no swap (refused)")


def test_the_histogram_bounds_the_swap_windows_gaps_when_the_gauge_holds_the_start() -> None:
    counts = {"0.05": 900, "0.075": 990, "0.1": 998, "0.15": 1000, "0.25": 1000, "+Inf": 1000}
    missed = SwapRun(rate=100.0, result="ok", gap_before_s=0.3, gap_after_s=0.3,
                     gaps_during=counts)
    assert missed.gap_bound_s == 0.15
    assert missed.gaps_over(0.1) == 2
    assert missed.verdict(0.1).startswith("every gap between two polls during the swap within "
                                          "150 ms (the poll-gap histogram, 1,000 gaps")
    assert missed.verdict(0.1).endswith("missed: 2 gaps longer (target ≤ 100 ms)")
    met = SwapRun(rate=100.0, result="ok", gap_before_s=0.3, gap_after_s=0.3,
                  gaps_during=counts | {"0.1": 1000})
    assert met.gap_bound_s == 0.1
    assert met.verdict(0.1).endswith("the gauge's 300 ms is from before it): met (target ≤ 100 ms)")
    rose = SwapRun(rate=100.0, result="ok", gap_before_s=0.02, gap_loading_s=0.03,
                   gap_after_s=0.08, gaps_during=counts)
    assert "80 ms, at the swap" in rose.verdict(0.1)  # the gauge's exact figure first


def test_publishing_links_a_checkpoint_into_the_repository_and_leaves_it(tmp_path: Path) -> None:
    cached = tmp_path / "games-grown"
    cached.mkdir()
    (cached / "config.json").write_text("{}")
    (cached / "model.safetensors").write_bytes(b"weights")
    repo = tmp_path / "repo"
    publish(repo, cached, "v1")
    second = publish(repo, cached, "v2")
    assert repository.current_version(repo) == "v2"
    assert (second / "model.safetensors").read_bytes() == b"weights"
    weights = (second / "model.safetensors", cached / "model.safetensors")
    assert weights[0].stat().st_ino == weights[1].stat().st_ino  # linked, not copied
    assert sorted(p.name for p in cached.iterdir()) == ["config.json", "model.safetensors"]
