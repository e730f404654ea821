"""The root of streamrec's exception hierarchy.

Every error streamrec raises on purpose derives from `StreamrecError`, so a caller
(or the CLI) can tell "streamrec refused this, with a reason" apart from a bug.
Each package adds small named subclasses in its own `errors.py` where callers must
tell cases apart.
"""

from __future__ import annotations


class StreamrecError(Exception):
    """Base class of every error streamrec raises deliberately."""


class ConfigError(StreamrecError):
    """A flag, environment variable or config file has a value streamrec cannot use."""
