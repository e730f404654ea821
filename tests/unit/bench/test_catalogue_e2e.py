"""`bench catalogue`'s pure half: the p99 ratio of the two models and its verdict, the
report, and its flags (no broker, no worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.bench import catalogue_e2e
from streamrec.bench.capacity import Probe
from streamrec.bench.catalogue_e2e import (
    Basis,
    CatalogueOptions,
    Run,
    offered_sentence,
    p99_ratios,
    report,
    summary_lines,
)
from streamrec.bench.hot_swap import SwapRun
from streamrec.bench.latency import Window
from streamrec.cli.main import build_parser


def runs(small_p99: tuple[float, ...], large_p99: tuple[float, ...]) -> list[Run]:
    """A round per pair of p99s, models alternating; after the warm-up each p99 is 10 ms
    lower."""
    out = []
    for rnd, (s, g) in enumerate(zip(small_p99, large_p99, strict=True), start=1):
        out.append(Run(rnd, "games-model", 23_715, 1000, Window(1000, 5.0, 10.0, s, 2 * s),
                       Window(800, 5.0, 10.0, s - 10, 2 * s)))
        out.append(Run(rnd, "games-grown-1000000", 1_000_000, 1000,
                       Window(1000, 6.0, 12.0, g, 2 * g), Window(800, 6.0, 12.0, g - 10, 2 * g)))
    return out


SWAP = SwapRun(rate=400.0, sent=9000, result="ok", load_s=12.5, gap_before_s=0.03,
               gap_loading_s=0.03, gap_after_s=0.06, gap_rises=[(12.6, 0.06)], swap_s=0.04,
               swaps=1,
               windows={"before": Window(3000, 8, 15, 30, 40),
                        "during": Window(5000, 9, 25, 70, 90),
                        "after": Window(1000, 8, 14, 28, 35)})


def test_the_ratio_is_of_the_medians_over_rounds() -> None:
    ratios = p99_ratios(runs((40, 60), (50, 70)))
    assert ratios["p99"] == pytest.approx(60 / 50)
    assert ratios["p99_steady"] == pytest.approx(50 / 40)


def test_one_stalled_round_of_three_leaves_the_ratio_alone() -> None:
    # The games model's second round met a stall: its mean would be 130 ms, its median 50.
    ratios = p99_ratios(runs((40, 300, 50), (60, 70, 65)))
    assert ratios["p99"] == pytest.approx(65 / 50)
    assert ratios["p99_steady"] == pytest.approx(55 / 40)


def test_the_verdicts_name_the_ratio_against_the_targets() -> None:
    opts = CatalogueOptions()
    met, swap = summary_lines(runs((40, 60), (50, 70)), SWAP, opts)
    assert met.startswith("p99 1,000,000 items / 23,715: 1.20 (after 5 s: 1.25): met")
    assert swap == ("hot swap: longest gap between two polls during the swap 60 ms, at the "
                    "swap (within the 0.2 s before it was counted): met (target ≤ 100 ms)")
    missed, _ = summary_lines(runs((40, 40), (70, 90)), SWAP, opts)
    assert ": missed (target ≤ 1.5)" in missed


def test_without_latency_rounds_the_swap_alone_is_judged() -> None:
    opts = CatalogueOptions(rounds=0)
    assert summary_lines([], SWAP, opts) == [summary_lines(runs((40, 60), (50, 70)), SWAP, opts)[1]]
    body = report([], SWAP, None, 700.0, opts, "confluent", "a box", "games.txt")
    assert "Verdicts: hot swap: longest gap" in body


def test_the_report_says_what_ran_and_every_run() -> None:
    opts = CatalogueOptions(items=100_000, seconds=8, rounds=1)
    basis = Basis(100_000, 2_000.0, 1_400.0, [Probe(1_000.0, 30.0, True),
                                               Probe(1_250.0, 40.0, True),
                                               Probe(1_562.5, 900.0, False),
                                               Probe(1_400.0, 60.0, True)])
    body = report(runs((40, 60), (50, 70)), SWAP, basis, 700.0, opts, "confluent", "a box",
                  "games.txt")
    assert "`streamrec bench catalogue --items 100000 --seconds 8 --rounds 1" in body
    assert ("The 100,000-item worker's throughput from offset 0 (the lesser of events/s and "
            "recommendations/s over the first 60,000 events): 2,000; its maximum live load "
            "(`capacity.py`: the stream offered 8 s at a rate, kept up when the median "
            "latency of the last 5 s is within 250 ms; probes: 1,000 kept up (30 ms), 1,250 "
            "kept up (40 ms), 1,562 fell behind (900 ms), 1,400 kept up (60 ms)): its maximum "
            "live load 1,400 events/s; every run offered 700 events/s, 50% of it.") in body
    assert "| 2 | 1,000,000 | 1,000 | 1,000 | 6 | 12 | 70 | 60 | 140 |" in body
    assert "| during | 5,000 | 9 | 25 | 70 | 90 |" in body
    assert ("`streamrec_poll_gap_max_seconds` 30 ms before the request, 30 ms at the last "
            "scrape before the swap was counted (every 0.2 s), 60 ms after it (it rose at "
            "12.6 s to 60 ms after the request);") in body


def test_a_search_that_never_kept_up_says_the_backlog_rate_stands_in() -> None:
    opts = CatalogueOptions(seconds=30)
    basis = Basis(1_000_000, 2_000.0, 0.0, [Probe(1_000.0, 4_000.0, False)])
    assert offered_sentence(basis, 1_000.0, opts).endswith(
        "probes: 1,000 fell behind (4,000 ms)): no probe kept up, so the backlog's throughput "
        "instead; every run offered 1,000 events/s, 50% of it.")


def test_catalogue_flags_become_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[CatalogueOptions] = []
    monkeypatch.setattr(catalogue_e2e, "run", seen.append)
    args = build_parser().parse_args([
        "bench", "catalogue", "--items", "100000", "--seconds", "8", "--rounds", "1",
        "--kafka-client", "kafka-python", "--bootstrap", "127.0.0.1:9092", "--no-report",
        "--rate", "300"])
    assert args.handler(args) == 0
    opts = seen[0]
    assert (opts.items, opts.seconds, opts.rounds, opts.rate) == (100_000, 8.0, 1, 300.0)
    assert (opts.kafka_client, opts.bootstrap, opts.report) == (
        "kafka-python", "127.0.0.1:9092", False)
    assert opts.workdir == CatalogueOptions().workdir
    defaults = build_parser().parse_args(["bench", "catalogue"])
    assert (defaults.items, defaults.rounds, defaults.no_report, defaults.rate) == (
        1_000_000, 3, False, None)  # the rate: half of the maximum live load, measured
    assert isinstance(opts.workdir, Path)
