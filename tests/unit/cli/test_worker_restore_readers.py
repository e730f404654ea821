"""`streamrec worker --restore-readers`: flag and env reach the worker's state."""

from __future__ import annotations

import pytest

from streamrec.cli.main import build_parser
from streamrec.cli.worker import config_from_args
from streamrec.common.errors import ConfigError


def test_default_is_one_reader_per_core_and_the_flag_and_env_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = build_parser().parse_args(["worker", "--model", "m"])
    assert config_from_args(args).restore_readers == 0
    args = build_parser().parse_args(["worker", "--model", "m", "--restore-readers", "1"])
    assert config_from_args(args).restore_readers == 1
    monkeypatch.setenv("STREAMREC_RESTORE_READERS", "3")
    args = build_parser().parse_args(["worker", "--model", "m"])
    assert config_from_args(args).restore_readers == 3


def test_a_negative_count_is_refused() -> None:
    args = build_parser().parse_args(["worker", "--model", "m", "--restore-readers", "-1"])
    with pytest.raises(ConfigError, match="restore_readers must be >= 0"):
        config_from_args(args)
