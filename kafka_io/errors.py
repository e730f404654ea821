"""Errors of Kafka connectivity and of the local development broker."""

from __future__ import annotations

from typing import Literal

from streamrec.common.errors import StreamrecError


class KafkaIOError(StreamrecError):
    """Base class of errors talking to Kafka or running the local broker."""


class BrokerError(KafkaIOError):
    """The local development broker could not be started, stopped or queried."""


class KafkaUnavailableError(KafkaIOError):
    """No Kafka broker answers at the configured bootstrap address."""


class TopicNotFoundError(KafkaUnavailableError):
    """A topic streamrec must read does not exist on the cluster (e.g. no changelog yet)."""


class KafkaSecurityError(KafkaUnavailableError):
    """A broker answers but the connection's security fails: TLS handshake or SASL login."""


ACL_DOC = 'docs/RELIABILITY.md, "Security: the ACLs the worker needs"'  # named by every refusal


class KafkaAuthorizationError(KafkaSecurityError):
    """The broker refuses an operation: the principal lacks an ACL (READ, WRITE, ...).

    A security error, not an outage: retrying cannot help, so it stops the command
    (exit 2) with the resource, the missing operation and the principal to grant it to.
    """


Denied = Literal["topic", "group", "transactional_id", "cluster", "other"]


class KafkaClientError(KafkaIOError):
    """A Kafka client call failed, whichever adapter made it (its own error is the cause).

    `denied` says which kind of resource the broker refused (an ACL is missing) and
    `names` which ones, when the client says; `retriable` is the client's own verdict.
    """

    def __init__(self, message: str, *, denied: Denied | None = None,
                 names: tuple[str, ...] = (), retriable: bool = False) -> None:
        super().__init__(message)
        self.denied = denied
        self.names = names
        self.retriable = retriable
