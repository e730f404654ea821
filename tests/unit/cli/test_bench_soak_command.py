"""`streamrec bench soak`: its flags reach the soak's options (no broker, no worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.bench import soak
from streamrec.bench.soak import SoakOptions
from streamrec.cli.main import build_parser


def test_soak_flags_become_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SoakOptions] = []
    monkeypatch.setattr(soak, "run", seen.append)
    args = build_parser().parse_args([
        "bench", "soak", "--minutes", "1", "--kafka-client", "confluent", "--rate", "300",
        "--model", "runs/games", "--restart-at", "0.4", "--max-rss-slope", "2",
        "--worker-arg=--max-batch", "--worker-arg", "256", "--empty-start"])
    assert args.handler(args) == 0
    opts = seen[0]
    assert (opts.minutes, opts.rate, opts.kafka_client, opts.model) == (
        1.0, 300.0, "confluent", Path("runs/games"))
    assert opts.restart_at == 0.4
    assert opts.thresholds.rss_mb_per_min == 2.0
    assert opts.worker_args == ("--max-batch", "256")
    assert opts.bootstrap is None
    assert opts.full_start is False


def test_soak_defaults_measure_the_rate_and_restart_midway() -> None:
    args = build_parser().parse_args(["bench", "soak"])
    assert args.rate is None  # half of the maximum live load, found first
    assert (args.minutes, args.restart_at) == (SoakOptions().minutes, 0.5)
    assert args.full_start is True  # the first life starts from full histories
