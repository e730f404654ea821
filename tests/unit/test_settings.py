"""`streamrec.common.settings`: flag > STREAMREC_* environment > default."""

from __future__ import annotations

import argparse

import pytest

from streamrec.common.errors import ConfigError
from streamrec.common.settings import env_default, env_name, parse_bool


def parser_with(flag: str, default: object, kind: type) -> argparse.ArgumentParser:
    """A parser with one flag whose default comes from `env_default`, as the CLI builds it."""
    parser = argparse.ArgumentParser()
    parser.add_argument(flag, type=kind, default=env_default(flag, default, kind))
    return parser


def test_env_name_follows_the_flag() -> None:
    assert env_name("--max-wait-ms") == "STREAMREC_MAX_WAIT_MS"
    assert env_name("--broker-port") == "STREAMREC_BROKER_PORT"


def test_default_when_neither_flag_nor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMREC_MAX_BATCH", raising=False)
    assert parser_with("--max-batch", 256, int).parse_args([]).max_batch == 256


def test_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "64")
    assert parser_with("--max-batch", 256, int).parse_args([]).max_batch == 64


def test_flag_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "64")
    args = parser_with("--max-batch", 256, int).parse_args(["--max-batch", "8"])
    assert args.max_batch == 8


def test_type_follows_the_default_when_no_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_MAX_WAIT_MS", "12.5")
    monkeypatch.setenv("STREAMREC_EVENTS_TOPIC", "clicks")
    assert env_default("--max-wait-ms", 20.0) == 12.5
    assert env_default("--events-topic", "events") == "clicks"


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("YES", True), (" on ", True),
    ("0", False), ("false", False), ("No", False), ("off", False), ("", False),
])
def test_bool_env_values(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("STREAMREC_VERBOSE", raw)
    assert env_default("--verbose", not expected) is expected


def test_bad_bool_is_refused() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool("maybe")


@pytest.mark.parametrize(("flag", "default", "raw"), [
    ("--max-batch", 256, "lots"),
    ("--max-wait-ms", 20.0, "soon"),
    ("--verbose", False, "perhaps"),
])
def test_bad_env_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, flag: str, default: object, raw: str,
) -> None:
    name = env_name(flag)
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=name) as failure:
        env_default(flag, default)
    assert repr(raw) in str(failure.value)


def test_unset_env_keeps_a_none_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMREC_MODEL", raising=False)
    assert env_default("--model", None) is None
    monkeypatch.setenv("STREAMREC_MODEL", "/models/v3")
    assert env_default("--model", None) == "/models/v3"
