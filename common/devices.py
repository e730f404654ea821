"""Which torch device a `--device` value means, decided in one place.

`auto` is CUDA when torch sees a GPU, else the CPU; anything else is passed to
torch, and a name torch does not know is refused as a configuration error.
"""

from __future__ import annotations

import torch

from streamrec.common.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; other names as torch reads them."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}: {exc}") from exc
