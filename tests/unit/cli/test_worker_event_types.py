"""`streamrec worker --event-types`: flag and env reach the typed config."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.cli.main import build_parser, main
from streamrec.cli.worker import config_from_args
from streamrec.common.errors import ConfigError
from streamrec.worker.config import WorkerConfig


def test_default_is_every_type() -> None:
    args = build_parser().parse_args(["worker", "--model", "m"])
    assert config_from_args(args).event_types is None


def test_flag_and_env_give_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["worker", "--model", "m", "--event-types",
                                      "view, purchase"])
    assert config_from_args(args).event_types == frozenset({"view", "purchase"})
    monkeypatch.setenv("STREAMREC_EVENT_TYPES", "purchase,untyped")
    args = build_parser().parse_args(["worker", "--model", "m"])
    assert config_from_args(args).event_types == frozenset({"purchase", "untyped"})
    args = build_parser().parse_args(["worker", "--model", "m", "--event-types", "view"])
    assert config_from_args(args).event_types == frozenset({"view"})  # flag beats env


def test_an_empty_allow_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        WorkerConfig(model_dir=Path("."), event_types=frozenset())


def test_help_names_the_flag_and_its_env(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--event-types" in text
    assert "STREAMREC_EVENT_TYPES" in text
    assert "counted and skipped" in text
