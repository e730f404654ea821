"""`streamrec worker` flags: env fallbacks, typed config, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.cli.main import build_parser, main
from streamrec.cli.worker import config_from_args


def test_flags_and_env_build_the_typed_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "7")
    monkeypatch.setenv("STREAMREC_BOOTSTRAP", "kafka:9094")
    args = build_parser().parse_args(["worker", "--model", "m", "--k", "3"])
    config = config_from_args(args)
    assert config.max_batch == 7
    assert config.bootstrap == "kafka:9094"
    assert config.k == 3
    assert config.model_dir == Path("m")
    assert config.max_wait_ms == 2.0
    assert config.metrics_port == 9108


def test_flag_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "7")
    args = build_parser().parse_args(["worker", "--model", "m", "--max-batch", "9"])
    assert config_from_args(args).max_batch == 9


def test_missing_model_and_bad_values_exit_2_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["worker"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["worker", "--model", "m", "--k", "0"]) == 2
    assert "k must be >= 1" in capsys.readouterr().err
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "lots")
    assert main(["worker", "--model", "m"]) == 2
    assert "STREAMREC_MAX_BATCH" in capsys.readouterr().err


def test_stall_and_shutdown_bounds_default_to_60_and_30_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_from_args(build_parser().parse_args(["worker", "--model", "m"]))
    assert (config.max_stall_s, config.shutdown_timeout_s) == (60.0, 30.0)
    monkeypatch.setenv("STREAMREC_MAX_STALL_S", "0")  # 0: the watchdog is off
    args = build_parser().parse_args(["worker", "--model", "m", "--shutdown-timeout-s", "5"])
    assert (config_from_args(args).max_stall_s, config_from_args(args).shutdown_timeout_s) == (
        0.0, 5.0)
    assert main(["worker", "--model", "m", "--shutdown-timeout-s", "0"]) == 2
    assert "shutdown_timeout_s must be > 0" in capsys.readouterr().err
    assert main(["worker", "--model", "m", "--max-stall-s", "-1"]) == 2
    assert "max_stall_s must be >= 0" in capsys.readouterr().err
