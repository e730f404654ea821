"""Pre-flight checks of a connection's security, the same for both Kafka adapters.

A client that cannot complete its TLS handshake or SASL login is slow to say so:
kafka-python retries until its 30 s bootstrap timeout and then reports only "Unable to
bootstrap", librdkafka retries for ever and logs. Before a client is built, these
probes do what it would do once, themselves: a handshake with the clients' own CA (a
wrong CA fails in milliseconds, with the certificate error) and a SASL login (wrong
credentials fail in a second, with the broker's reason), each naming the flag to check.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any

from kafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    UnsupportedSaslMechanismError,
    for_code,
)
from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from streamrec.common.errors import ConfigError
from streamrec.kafka_io.errors import KafkaSecurityError
from streamrec.kafka_io.security import SASL_PROTOCOLS, KafkaSecurity

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0  # TCP connect + TLS handshake of the pre-flight probe


def preflight(bootstrap: str, security: KafkaSecurity) -> None:
    """The TLS handshake and the SASL login a client would make: KafkaSecurityError at
    once when either fails."""
    if security.uses_tls:
        check_tls(bootstrap, security)
    if security.protocol in SASL_PROTOCOLS:
        check_sasl(bootstrap, security)


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


def check_sasl(
    bootstrap: str, security: KafkaSecurity, timeout_s: float = PROBE_TIMEOUT_S,
) -> None:
    """Log in once to the first bootstrap broker that accepts TCP, as the clients will.

    kafka-python 3 usually loses the broker's SaslAuthenticate error (the broker closes
    the connection right behind it and the client drops the bytes read with the close),
    then retries until its 30 s bootstrap timeout. This probe reads the answer itself:
    wrong credentials, a mechanism the broker does not enable, or a listener that is
    not SASL raise KafkaSecurityError at once, naming the flag to check. Returns
    quietly when the login works or no address accepts TCP (the client then reports
    the broker as unreachable).
    """
    for host, port in bootstrap_addresses(bootstrap):
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            logger.debug("SASL probe: %s:%d does not accept connections: %s", host, port, exc)
            continue
        try:
            if security.uses_tls:  # check_tls has vetted the handshake already
                sock = security.ssl_context().wrap_socket(sock, server_hostname=host)
            failure = _sasl_login(sock, f"{host}:{port}", host, security,
                                  time.monotonic() + timeout_s)
        except OSError as exc:
            failure = _sasl_lost(f"{host}:{port}", security, exc)
        finally:
            sock.close()
        if failure is not None:
            raise KafkaSecurityError(failure)
        logger.debug("SASL probe: %s:%d accepts the credentials", host, port)
        return


def _sasl_login(
    sock: socket.socket, address: str, host: str, security: KafkaSecurity, deadline: float,
) -> str | None:
    """SaslHandshake + SaslAuthenticate on a connected socket: None, or what failed."""
    mechanism_name = security.sasl_mechanism or "PLAIN"
    parser = KafkaProtocol(client_id="streamrec-sasl-probe")

    def call(request: Any) -> Any:
        parser.send_request(request)
        sock.sendall(parser.send_bytes())
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the broker closed the connection")
            responses = parser.receive_bytes(data)
            if responses:
                return responses[0][1]

    try:
        handshake = call(SaslHandshakeRequest(mechanism=mechanism_name, version=1))
        error = for_code(handshake.error_code)
        if error is UnsupportedSaslMechanismError:
            return (f"SASL mechanism {mechanism_name} is not enabled on {address} (it offers "
                    f"{', '.join(handshake.mechanisms) or 'none'}) — check --sasl-mechanism")
        if error is IllegalSaslStateError:
            return (f"{address} is not a SASL listener: it refused the SASL handshake — "
                    f"check --bootstrap and --security-protocol ({security.protocol})")
        if handshake.error_code:
            return f"SASL handshake with {address} failed: {error.__name__}"
        mechanism = get_sasl_mechanism(mechanism_name)(host=host, **security.client_kwargs())
        while not mechanism.is_done():
            answer = call(SaslAuthenticateRequest(auth_bytes=mechanism.auth_bytes(), version=1))
            if answer.error_code:
                return _sasl_refused(address, security,
                                     f"{for_code(answer.error_code).__name__}: "
                                     f"{answer.error_message}")
            mechanism.receive(answer.auth_bytes)
    except KafkaError as exc:  # a frame that is no Kafka answer: TLS bytes, most likely
        return _sasl_lost(address, security, exc)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        # A kafka-python internal this probe relies on changed: leave it to the client.
        logger.debug("SASL probe of %s skipped: %r", address, exc)
        return None
    if not mechanism.is_authenticated():
        return _sasl_refused(address, security, "the broker did not confirm the login")
    return None


def _sasl_refused(address: str, security: KafkaSecurity, reason: str) -> str:
    return (f"authentication to {address} failed: {reason} — check --sasl-mechanism "
            f"({security.sasl_mechanism or 'PLAIN'}), --sasl-username and --sasl-password")


def _sasl_lost(address: str, security: KafkaSecurity, exc: BaseException) -> str:
    """A SASL login that got no Kafka answer: most likely the wrong kind of listener."""
    other = "SASL_PLAINTEXT" if security.uses_tls else "SASL_SSL"
    return (f"SASL login to {address} got no answer ({exc}) — is {address} a "
            f"{security.protocol} listener? (a TLS listener needs SASL_SSL, a plaintext one "
            f"SASL_PLAINTEXT: try --security-protocol {other})")
