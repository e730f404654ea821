"""What every kafka-python client shares: errors turned into the port's, partition
conversion, and a bootstrap timeout explained by the last failure kafka-python logged.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

from kafka import TopicPartition as KpPartition
from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from streamrec.kafka_io.errors import (
    Denied,
    KafkaClientError,
    KafkaSecurityError,
    KafkaUnavailableError,
)
from streamrec.kafka_io.port import TopicPartition
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)

T = TypeVar("T")
AUTH_ERRORS = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError,
               IllegalSaslStateError)
_DENIED: tuple[tuple[type[AuthorizationError], Denied], ...] = (
    (TopicAuthorizationFailedError, "topic"), (GroupAuthorizationFailedError, "group"),
    (TransactionalIdAuthorizationFailedError, "transactional_id"),
    (ClusterAuthorizationFailedError, "cluster"))


def translate(exc: BaseException) -> KafkaClientError:
    """The port's error for a kafka-python exception (which becomes its cause)."""
    if isinstance(exc, KafkaClientError):
        return exc
    denied: Denied | None = None
    names: tuple[str, ...] = ()
    if isinstance(exc, AuthorizationError):
        denied = next((kind for cls, kind in _DENIED if isinstance(exc, cls)), "other")
        names = _names(exc)
    text = str(exc) or type(exc).__name__
    if denied is not None and exc.args and exc.args[0]:
        text = str(exc.args[0])  # the broker's words, without kafka-python's error prefix
    error = KafkaClientError(text, denied=denied, names=names,
                             retriable=bool(getattr(exc, "retriable", False)))
    error.__cause__ = exc
    return error


def _names(exc: BaseException) -> tuple[str, ...]:
    """The resource names kafka-python puts in an error: a set, or one bare name."""
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, set | frozenset | list | tuple):
        return tuple(sorted(str(t) for t in arg))
    if isinstance(arg, str) and arg and not any(c.isspace() for c in arg):
        return (arg,)
    return ()


@contextlib.contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except KafkaError as exc:
        raise translate(exc) from exc


def to_kp(tp: TopicPartition) -> KpPartition:
    return KpPartition(tp.topic, tp.partition)


def to_port(tp: KpPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


# -- bootstrap diagnosis ------------------------------------------------------------


def open_client(bootstrap: str, security: KafkaSecurity, build: Callable[[], T]) -> T:
    """`build()` a kafka-python client; a bootstrap timeout becomes a
    KafkaSecurityError/KafkaUnavailableError naming the last failure it logged."""
    with _bootstrap_failures() as failures:
        try:
            return build()
        except KafkaTimeoutError as exc:
            raise _diagnose(bootstrap, security, exc, failures) from exc
        except KafkaError as exc:
            raise translate(exc) from exc


class _FailureLog(logging.Handler):
    """Keeps the last connection failure kafka-python logs while it bootstraps."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: BaseException | None = None
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        # The final "Unable to bootstrap" timeout is logged too: it is no cause.
        errors = [a for a in args
                  if isinstance(a, BaseException) and not isinstance(a, KafkaTimeoutError)]
        if errors:
            self.last, self.text = errors[-1], str(errors[-1])
        elif record.getMessage().startswith("Bootstrap attempt"):
            self.text = record.getMessage()


@contextlib.contextmanager
def _bootstrap_failures() -> Iterator[_FailureLog]:
    """Listen to kafka-python's connection manager for the duration of a bootstrap."""
    handler = _FailureLog()
    source = logging.getLogger("kafka.net.manager")
    source.addHandler(handler)
    try:
        yield handler
    finally:
        source.removeHandler(handler)


def _diagnose(
    bootstrap: str, security: KafkaSecurity, exc: KafkaTimeoutError, failures: _FailureLog,
) -> KafkaUnavailableError:
    """The error for a bootstrap timeout, from the last failure kafka-python logged."""
    last, text = failures.last, failures.text
    if isinstance(last, AUTH_ERRORS):
        return KafkaSecurityError(
            f"authentication to {bootstrap} failed: {text} — check --sasl-mechanism "
            f"({security.sasl_mechanism or 'PLAIN'}), --sasl-username and --sasl-password")
    if text and "Handshake failed" in text:
        return KafkaSecurityError(
            f"TLS handshake with {bootstrap} failed: {text} — check --security-protocol "
            f"({security.protocol}) and --ssl-cafile")
    cause = f" (last error: {text})" if text else ""
    return KafkaUnavailableError(f"no Kafka broker answers at {bootstrap}: {exc}{cause}")
