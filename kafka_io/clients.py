"""Kafka clients made the same way everywhere: consumer, producer, admin.

One place decides the settings that carry the delivery guarantees (manual commits,
acks=all, idempotence, retries) so every client the worker or a tool makes agrees,
and applies the same `KafkaSecurity` to each. It also makes connection failures
say what is wrong: kafka-python 3 retries a failed TLS handshake or SASL login
until its 30 s bootstrap timeout and then only reports "Unable to bootstrap", so
TLS settings get a pre-flight handshake with the client's own CA first (a wrong CA
fails in milliseconds, with the certificate error), and a bootstrap that still
times out is reported with the last failure kafka-python logged.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from streamrec.common.errors import ConfigError
from streamrec.kafka_io.errors import KafkaSecurityError, KafkaUnavailableError
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)

T = TypeVar("T")
PROBE_TIMEOUT_S = 10.0  # TCP connect + TLS handshake of the pre-flight probe
AUTH_ERRORS = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError,
               IllegalSaslStateError)

# Large enough for the biggest record a dead-letter copy may carry, plus headers.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


def make_consumer(
    bootstrap: str, group_id: str | None, client_id: str, security: KafkaSecurity | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A group consumer with manual commits that starts from the earliest offset."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": MAX_REQUEST_BYTES,
        "fetch_max_bytes": 4 * MAX_REQUEST_BYTES,
        "isolation_level": "read_committed",
    }
    security = security or KafkaSecurity()
    config.update(security.client_kwargs())
    config.update(overrides)
    return open_client(bootstrap, security, lambda: KafkaConsumer(**config))


def make_producer(
    bootstrap: str, client_id: str, security: KafkaSecurity | None = None, **overrides: Any,
) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "retry_backoff_ms": 100,
        "delivery_timeout_ms": 120_000,
        "linger_ms": 5,
        "max_request_size": MAX_REQUEST_BYTES,
    }
    security = security or KafkaSecurity()
    config.update(security.client_kwargs())
    config.update(overrides)
    return open_client(bootstrap, security, lambda: KafkaProducer(**config))


def make_admin(
    bootstrap: str, client_id: str, security: KafkaSecurity | None = None,
) -> KafkaAdminClient:
    """An admin client, failing with a clear error when no broker answers."""
    security = security or KafkaSecurity()
    return open_client(bootstrap, security, lambda: KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id=client_id, **security.client_kwargs()))


def ensure_topics(
    bootstrap: str, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None,
    client_id: str = "streamrec-admin", security: KafkaSecurity | None = None,
    replication_factor: int | None = None,
) -> list[str]:
    """Create the missing topics (name -> partitions); returns the names created.

    `replication_factor` None leaves it to the broker (`default.replication.factor`),
    so a topic on a 3-broker cluster gets the cluster's replication, not a hard-coded 1.
    """
    if replication_factor is not None and replication_factor < 1:
        raise ConfigError(f"replication factor must be >= 1, got {replication_factor}")
    admin = make_admin(bootstrap, client_id, security)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=parts,
                     replication_factor=-1 if replication_factor is None else replication_factor,
                     topic_configs=(configs or {}).get(name, {}))
            for name, parts in topics.items() if name not in existing
        ]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another worker won the race: fine
            except KafkaError as exc:
                raise KafkaUnavailableError(f"cannot create topic {topic.name}: {exc}") from exc
        if created:
            # Created is not ready: wait until every partition has a leader, or a
            # consumer subscribing right now would see no partitions.
            try:
                admin.wait_for_topics(created, timeout_ms=30_000)
            except KafkaTimeoutError as exc:
                raise KafkaUnavailableError(f"topics {created} not ready: {exc}") from exc
            logger.info("created topics %s", created)
        return created
    finally:
        admin.close()


# -- connection diagnosis -------------------------------------------------------------


def open_client(bootstrap: str, security: KafkaSecurity, build: Callable[[], T]) -> T:
    """`build()` a client; failures become KafkaSecurityError/KafkaUnavailableError.

    Raises at once on a failed pre-flight TLS handshake; otherwise after kafka-python's
    own bootstrap timeout, naming the last connection failure it logged.
    """
    if security.uses_tls:
        check_tls(bootstrap, security)
    with _bootstrap_failures() as failures:
        try:
            return build()
        except KafkaTimeoutError as exc:
            raise _diagnose(bootstrap, security, exc, failures) from exc


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """`host:port[,host:port]` (IPv6 as `[::1]:9092`) as (host, port) pairs."""
    addresses = []
    for part in filter(None, (p.strip() for p in bootstrap.split(","))):
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"bootstrap address {part!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    if not addresses:
        raise ConfigError("the bootstrap address is empty")
    return addresses


def check_tls(bootstrap: str, security: KafkaSecurity, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Handshake with the first bootstrap broker that accepts TCP, with the clients' TLS context.

    Raises KafkaSecurityError saying what failed and which setting to check; returns
    quietly when the handshake works or no address accepts TCP (the client then
    reports the broker as unreachable).
    """
    context = security.ssl_context()
    for host, port in bootstrap_addresses(bootstrap):
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            logger.debug("TLS probe: %s:%d does not accept connections: %s", host, port, exc)
            continue
        try:
            with context.wrap_socket(sock, server_hostname=host):
                logger.debug("TLS probe: handshake with %s:%d works", host, port)
                return
        except OSError as exc:  # ssl.SSLError included
            raise KafkaSecurityError(
                _tls_failure(f"{host}:{port}", host, security, exc, timeout_s)) from exc
        finally:
            sock.close()


def _tls_failure(
    address: str, host: str, security: KafkaSecurity, exc: Exception, timeout_s: float,
) -> str:
    """What a failed handshake means, and which flag to look at."""
    head = f"TLS handshake with {address} failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        if exc.verify_code in (62, 64) or "mismatch" in reason:  # hostname / IP mismatch
            return (f"{head}: certificate verify failed: {reason} — the broker's certificate "
                    f"does not name {host}: connect by a name in its subjectAltName, or pass "
                    "--no-ssl-check-hostname")
        ca = security.ssl_cafile or "the system CAs (no --ssl-cafile given)"
        return (f"{head}: certificate verify failed: {reason} — check --ssl-cafile: {ca} "
                "must hold the CA that signed the broker's certificate")
    if isinstance(exc, TimeoutError):
        return (f"{head}: no TLS answer within {timeout_s:.0f}s — is {address} an SSL "
                f"listener? (--security-protocol {security.protocol})")
    hint = f"is {address} an SSL listener (not PLAINTEXT)?"
    if security.ssl_certfile is None:
        hint += " Does the broker require a client certificate (--ssl-certfile/--ssl-keyfile)?"
    return f"{head}: {exc} — {hint}"


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
