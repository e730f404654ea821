"""Shared flag parsing: `--since`."""

from __future__ import annotations

import pytest

from streamrec.cli.flags import parse_since
from streamrec.common.errors import ConfigError


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", 1_000_000_000 - 90_000), ("30m", 1_000_000_000 - 1_800_000),
    ("1h", 1_000_000_000 - 3_600_000), ("7d", 1_000_000_000 - 604_800_000),
    ("0.5h", 1_000_000_000 - 1_800_000), ("881250949000", 881_250_949_000), ("0", 0),
])
def test_since_takes_durations_and_epoch_ms(text: str, expected: int) -> None:
    assert parse_since(text, now_ms=1_000_000_000) == expected


@pytest.mark.parametrize("text", ["yesterday", "1w", "", "h"])
def test_since_refuses_anything_else_naming_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"duration .* or epoch"):
        parse_since(text, now_ms=0)
