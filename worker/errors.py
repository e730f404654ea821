"""Errors of the worker package: broker, Kafka connectivity, publishing."""

from __future__ import annotations

from streamrec.common.errors import StreamrecError


class WorkerError(StreamrecError):
    """Base class of worker errors."""


class BrokerError(WorkerError):
    """The local development broker could not be started, stopped or queried."""


class KafkaUnavailableError(WorkerError):
    """No Kafka broker answers at the configured bootstrap address."""


class PublishError(WorkerError):
    """A recommendation or dead-letter record was not acknowledged after retries.

    The worker stops rather than commit offsets past records it could not publish.
    `kinds` names what failed per record (recommendation strategy, dlq, changelog).
    """

    def __init__(self, message: str, kinds: list[str] | None = None) -> None:
        super().__init__(message)
        self.kinds = kinds or []


class TopicNotFoundError(KafkaUnavailableError):
    """A topic streamrec must read does not exist on the cluster (e.g. no changelog yet)."""


class ChangelogError(WorkerError):
    """A histories-changelog record cannot be encoded or decoded (bad bytes, over a limit)."""


class KafkaSecurityError(KafkaUnavailableError):
    """A broker answers but the connection's security fails: TLS handshake or SASL login."""
