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
    """
