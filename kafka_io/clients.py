"""Kafka clients made the same way everywhere: consumer, producer, admin.

One place decides the settings that carry the delivery guarantees (manual commits,
acks=all, idempotence, retries) so every client the worker or a tool makes agrees,
and applies the same `KafkaSecurity` to each. It also makes connection failures
say what is wrong: kafka-python 3 retries a failed TLS handshake or SASL login
until its 30 s bootstrap timeout and then only reports "Unable to bootstrap", so
TLS settings get a pre-flight handshake with the client's own CA first (a wrong CA
fails in milliseconds, with the certificate error), SASL settings a pre-flight login
(wrong credentials fail in a second, with the broker's reason), and a bootstrap that
still times out is reported with the last failure kafka-python logged.

Authorization (ACLs) is checked the same way: `check_access` asks the broker, before a
command reads or writes anything, whether its principal may do what it needs, and
`authorization_error` turns the broker's refusals met later (an ACL revoked while
running) into a `KafkaAuthorizationError` naming the resource, the operation and the
principal; docs/RELIABILITY.md lists the ACLs the worker needs.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    UnsupportedSaslMechanismError,
    for_code,
)
from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from streamrec.common.errors import ConfigError
from streamrec.kafka_io.errors import (
    KafkaAuthorizationError,
    KafkaSecurityError,
    KafkaUnavailableError,
)
from streamrec.kafka_io.security import SASL_PROTOCOLS, KafkaSecurity

logger = logging.getLogger(__name__)

T = TypeVar("T")
PROBE_TIMEOUT_S = 10.0  # TCP connect + TLS handshake of the pre-flight probe
TOPIC_READY_S = 30.0  # how long a topic may take to have a leader for every partition
AUTH_ERRORS = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError,
               IllegalSaslStateError)
ACL_DOC = 'docs/RELIABILITY.md, "Security: the ACLs the worker needs"'

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
            except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
                # An existing topic the principal may not DESCRIBE is not listed either,
                # so "missing" may mean "invisible": say both.
                who = principal_of(security or KafkaSecurity())
                raise KafkaAuthorizationError(
                    f"not authorized to CREATE topic {topic.name} (principal {who}): it does "
                    f"not exist, or {who} may not DESCRIBE it; create it and grant {who} "
                    f"access to it, or grant CREATE on the cluster to let streamrec create it "
                    f"(see {ACL_DOC})") from exc
            except KafkaError as exc:
                raise KafkaUnavailableError(f"cannot create topic {topic.name}: {exc}") from exc
        if created:
            # Created is not ready: wait until every partition has a leader, or a
            # consumer subscribing right now would see no partitions.
            wait_for_topics(admin, created)
            logger.info("created topics %s", created)
        return created
    finally:
        admin.close()


def wait_for_topics(admin: KafkaAdminClient, topics: list[str],
                    timeout_s: float = TOPIC_READY_S) -> None:
    """Until every partition of `topics` has a leader in the metadata `admin` reads: a
    topic just created (by anyone) can take a while to reach every broker of a cluster,
    and described too early it has no partitions. KafkaUnavailableError past the bound."""
    try:
        admin.wait_for_topics(topics, timeout_ms=int(timeout_s * 1000))
    except KafkaTimeoutError as exc:
        raise KafkaUnavailableError(f"topics {topics} not ready: {exc}") from exc


def subscribe_when_known(consumer: KafkaConsumer, topic: str, listener: Any = None,
                         timeout_s: float = TOPIC_READY_S) -> None:
    """Subscribe once the consumer's own metadata knows the topic's partitions: a group
    joined before that is assigned nothing until the next metadata refresh (5 minutes
    by default), and a topic created a moment before is not always known at once.
    KafkaUnavailableError past the bound."""
    deadline = time.monotonic() + timeout_s
    while not consumer.partitions_for_topic(topic):
        if time.monotonic() > deadline:
            raise KafkaUnavailableError(
                f"topic {topic!r} has no known partitions after {timeout_s:.0f}s")
        time.sleep(0.2)
    consumer.subscribe([topic], listener=listener)


# -- connection diagnosis -------------------------------------------------------------


def open_client(bootstrap: str, security: KafkaSecurity, build: Callable[[], T]) -> T:
    """`build()` a client; failures become KafkaSecurityError/KafkaUnavailableError.

    Raises at once on a failed pre-flight TLS handshake or SASL login; otherwise after
    kafka-python's own bootstrap timeout, naming the last connection failure it logged.
    """
    if security.uses_tls:
        check_tls(bootstrap, security)
    if security.protocol in SASL_PROTOCOLS:
        check_sasl(bootstrap, security)
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


# -- authorization ----------------------------------------------------------------------


def principal_of(security: KafkaSecurity) -> str:
    """The principal the broker authorizes for these settings: what an ACL must name."""
    if security.protocol in SASL_PROTOCOLS:
        return f"User:{security.sasl_username}"
    if security.ssl_certfile is not None:
        return "User:<the distinguished name of --ssl-certfile>"
    return "User:ANONYMOUS"


def not_authorized(
    operations: Collection[str], resource: str, name: str, security: KafkaSecurity,
) -> str:
    """`not authorized to WRITE topic t (principal User:u): grant User:u WRITE on topic t`."""
    ops = " and ".join(operations)
    who = principal_of(security)
    return (f"not authorized to {ops} {resource} {name} (principal {who}): grant {who} {ops} "
            f"on {resource} {name}")


def authorization_error(
    exc: BaseException, security: KafkaSecurity, *, reads: Collection[str] = (),
    group: str | None = None, transactional_id: str | None = None,
) -> KafkaAuthorizationError | None:
    """The KafkaAuthorizationError for a broker refusal in `exc` (or its causes), else None.

    kafka-python's errors name the topic, not the operation refused: a topic in `reads`
    was being read (READ is missing), any other one written (WRITE is missing).
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, AuthorizationError):
        cause = cause.__cause__
    if cause is None:
        return None
    if isinstance(cause, TopicAuthorizationFailedError):
        names = _topics_named(cause) or ["(not named by the broker)"]
        text = "; ".join(not_authorized(["READ" if n in reads else "WRITE"], "topic", n, security)
                         for n in names)
    elif isinstance(cause, GroupAuthorizationFailedError):
        text = not_authorized(["READ"], "group", group or _error_text(cause), security)
    elif isinstance(cause, TransactionalIdAuthorizationFailedError):
        text = not_authorized(["WRITE"], "transactional id",
                              transactional_id or _error_text(cause), security)
    elif isinstance(cause, ClusterAuthorizationFailedError):
        who = principal_of(security)
        text = (f"not authorized on the cluster (principal {who}): {_error_text(cause)}; an "
                f"idempotent producer needs WRITE on the topics it writes (or IDEMPOTENT_WRITE "
                f"on the cluster)")
    else:
        text = f"not authorized (principal {principal_of(security)}): {cause}"
    return KafkaAuthorizationError(f"{text} (see {ACL_DOC})")


def _topics_named(exc: TopicAuthorizationFailedError) -> list[str]:
    """The topic names kafka-python puts in the error: a set, or one bare name."""
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, set | frozenset | list | tuple):
        return sorted(str(t) for t in arg)
    if isinstance(arg, str) and arg and not any(c.isspace() for c in arg):
        return [arg]
    return []


def _error_text(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args and exc.args[0] else type(exc).__name__


def check_access(
    bootstrap: str, security: KafkaSecurity, topics: Mapping[str, Collection[str]], *,
    group: str | None = None, transactional_id: str | None = None,
    client_id: str = "streamrec-access-check",
) -> None:
    """Raise KafkaAuthorizationError listing every ACL the principal lacks, before any work.

    `topics` maps each topic to the operations needed on it (READ, WRITE). The broker
    reports its own verdict per topic (KIP-430 authorized operations); a topic the
    principal may not even DESCRIBE lacks them all (READ and WRITE imply DESCRIBE),
    whether it exists or not. A topic that does not exist yet is left to its creation.
    The group must allow READ, the transactional id (exactly-once) WRITE. Anything
    the broker cannot answer is left to the clients, which fail on it themselves.
    """
    problems: list[str] = []
    admin = make_admin(bootstrap, client_id, security)
    try:
        problems += _topic_problems(admin, security, topics)
        if group is not None and _denied(lambda: _group_operations(admin, group),
                                         GroupAuthorizationFailedError, "READ"):
            problems.append(not_authorized(["READ"], "group", group, security))
        if transactional_id is not None and _denied(
                lambda: admin.describe_transactions([transactional_id]),
                TransactionalIdAuthorizationFailedError, None):
            problems.append(not_authorized(["WRITE"], "transactional id", transactional_id,
                                           security))
    finally:
        admin.close()
    if problems:
        raise KafkaAuthorizationError(f"{'; '.join(problems)} (see {ACL_DOC})")


def _topic_problems(
    admin: KafkaAdminClient, security: KafkaSecurity, topics: Mapping[str, Collection[str]],
) -> list[str]:
    try:
        described = {t["name"]: t for t in admin.describe_topics(list(topics))}
    except KafkaError as exc:
        logger.debug("access check: cannot describe %s: %s", list(topics), exc)
        return []
    problems = []
    for name, needed in topics.items():
        topic = described.get(name, {})
        code = topic.get("error_code")
        granted = topic.get("authorized_operations")
        if code == TopicAuthorizationFailedError.errno:
            missing = list(needed)
        elif code == 0 and isinstance(granted, list) and granted and "ALL" not in granted:
            missing = [op for op in needed if op not in granted]
        else:  # does not exist yet, or the broker does not say
            missing = []
        if missing:
            problems.append(not_authorized(missing, "topic", name, security))
    return problems


def _group_operations(admin: KafkaAdminClient, group: str) -> list[str] | None:
    """The operations the principal may do on `group` (None: not known, e.g. a new group)."""
    described = admin.describe_groups([group], include_authorized_operations=True)
    granted = described.get(group, {}).get("authorized_operations")
    return granted if isinstance(granted, list) else None


def _denied(ask: Callable[[], Any], refusal: type[KafkaError], needed: str | None) -> bool:
    """Whether `ask()` is refused (`refusal`) or answers operations without `needed`."""
    try:
        granted = ask()
    except refusal:
        return True
    except KafkaError as exc:  # e.g. no coordinator yet: the client will tell
        logger.debug("access check: %s", exc)
        return False
    return (needed is not None and isinstance(granted, list) and bool(granted)
            and needed not in granted and "ALL" not in granted)


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
