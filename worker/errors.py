"""Errors of the streaming pipeline: publishing and the histories changelog.

Kafka connectivity errors live in `streamrec.kafka_io.errors`; both derive from
`streamrec.common.errors.StreamrecError`, which the CLI turns into exit code 2.
"""

from __future__ import annotations

from streamrec.common.errors import StreamrecError


class WorkerError(StreamrecError):
    """Base class of pipeline errors."""


class PublishError(WorkerError):
    """A recommendation or dead-letter record was not acknowledged after retries.

    The worker stops rather than commit offsets past records it could not publish.
    `kinds` names what failed per record (recommendation strategy, dlq, changelog).
    """

    def __init__(self, message: str, kinds: list[str] | None = None) -> None:
        super().__init__(message)
        self.kinds = kinds or []


class ChangelogError(WorkerError):
    """A histories-changelog record cannot be encoded or decoded (bad bytes, over a limit)."""


class RestoreAbandonedError(WorkerError):
    """A restore was left unfinished because the worker is stopping; its partitions are
    not served (their events stay uncommitted for the next owner)."""


class WorkerStalledError(WorkerError):
    """The worker waited `--max-stall-s` to join its group, commit, or make progress on
    work waiting for it (`watchdog.py`), and stopped so that a supervisor restarts it."""
