"""Flags with `STREAMREC_*` environment fallbacks, in one place.

Every command-line flag can also be set from the environment (containers and
Kubernetes set env vars, not argv). The precedence is: flag > environment > default.
`env_default` resolves the environment part when the parser is built, so `--help`
shows the effective default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from streamrec.common.errors import ConfigError

T = TypeVar("T")

ENV_PREFIX = "STREAMREC_"


def env_name(flag: str) -> str:
    """`--max-wait-ms` -> `STREAMREC_MAX_WAIT_MS`."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def parse_bool(text: str) -> bool:
    """Accept the usual spellings of a boolean environment value."""
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def env_default(flag: str, default: T, convert: Callable[[str], T] | None = None) -> T:
    """The default for `flag`: its `STREAMREC_*` variable when set, else `default`.

    Raises ConfigError naming the variable when its value does not convert, so a
    typo in a deployment manifest fails at start-up instead of at first use.
    """
    name = env_name(flag)
    raw = os.environ.get(name)
    if raw is None:
        return default
    if convert is None:
        convert = type(default) if default is not None else str  # type: ignore[assignment]
        if convert is bool:
            convert = parse_bool  # type: ignore[assignment]
    try:
        return convert(raw)  # type: ignore[misc]
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not valid for {flag}: {exc}") from exc
