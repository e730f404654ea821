"""Errors of the index package."""

from __future__ import annotations

from streamrec.common.errors import StreamrecError


class IndexBuildError(StreamrecError):
    """The item table cannot be indexed (wrong shape, dtype, or empty)."""


class IndexRecallError(IndexBuildError):
    """An approximate index finds too little of the exact top k (below --min-recall)."""
