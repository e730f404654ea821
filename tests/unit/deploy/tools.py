"""Finding external tools for the deploy tests: skip where one is missing, except in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, install: str) -> str:
    """The path of `name`; skips the test when it is missing, fails when `CI` is set.

    CI must run these checks, so a runner without the tool is an error there, not a
    quiet skip.
    """
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed ({install}; deploy/setup.sh does it as root)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}")
    pytest.skip(reason)
