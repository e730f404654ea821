"""Broker refusals become `KafkaAuthorizationError`s naming resource, operation and principal;
the SASL pre-flight explains a listener that gives no Kafka answer.

The real broker's refusals are in tests/integration/test_sasl_acl.py; here the mapping
is checked on the error objects each client raises, as its adapter translates them
(kafka-python's shapes differ: a set of topics from the consumer, one name from the
producer; librdkafka's carry a code and the adapter adds the topic), and the probe
against plain sockets in a thread on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
from kafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from streamrec.common.errors import StreamrecError
from streamrec.kafka_io.access import authorization_error, not_authorized
from streamrec.kafka_io.confluent import base as confluent
from streamrec.kafka_io.errors import KafkaAuthorizationError, KafkaSecurityError
from streamrec.kafka_io.kafka_python import base as kafka_python
from streamrec.kafka_io.probe import check_sasl
from streamrec.kafka_io.security import KafkaSecurity, principal_of

BOB = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="bob",
                    sasl_password="secret")
DOC = '(see docs/RELIABILITY.md, "Security: the ACLs the worker needs")'


def test_the_principal_is_the_one_an_acl_must_name(tmp_path: Path) -> None:
    pem = tmp_path / "client.pem"
    assert principal_of(BOB) == "User:bob"
    assert principal_of(KafkaSecurity()) == "User:ANONYMOUS"
    assert principal_of(KafkaSecurity(protocol="SSL")) == "User:ANONYMOUS"
    mutual = KafkaSecurity(protocol="SSL", ssl_certfile=pem, ssl_keyfile=pem)
    assert "--ssl-certfile" in principal_of(mutual)


def test_the_message_names_operation_resource_and_principal() -> None:
    assert not_authorized(["READ", "WRITE"], "topic", "t", BOB) == (
        "not authorized to READ and WRITE topic t (principal User:bob): grant User:bob READ and "
        "WRITE on topic t")


def test_an_authorization_error_is_a_security_error_with_exit_code_2() -> None:
    assert issubclass(KafkaAuthorizationError, KafkaSecurityError)
    assert issubclass(KafkaAuthorizationError, StreamrecError)  # the CLI's exit 2


@pytest.mark.parametrize(("error", "expected"), [
    (TopicAuthorizationFailedError({"events"}),  # the consumer's fetch
     "not authorized to READ topic events (principal User:bob): grant User:bob READ on topic "
     "events"),
    (TopicAuthorizationFailedError("recs"),  # the producer's sender
     "not authorized to WRITE topic recs (principal User:bob): grant User:bob WRITE on topic "
     "recs"),
    (GroupAuthorizationFailedError("g"),
     "not authorized to READ group g (principal User:bob): grant User:bob READ on group g"),
    (TransactionalIdAuthorizationFailedError(),
     "not authorized to WRITE transactional id g-host (principal User:bob): grant User:bob "
     "WRITE on transactional id g-host"),
])
def test_kafka_refusals_map_to_what_to_grant(error: Exception, expected: str) -> None:
    mapped = authorization_error(kafka_python.translate(error), BOB, reads=["events"],
                                 group="g", transactional_id="g-host")
    assert isinstance(mapped, KafkaAuthorizationError)
    assert str(mapped) == f"{expected} {DOC}"


def test_every_refused_topic_is_named() -> None:
    mapped = authorization_error(kafka_python.translate(TopicAuthorizationFailedError({"b", "a"})),
                                 BOB, reads=["a"])
    assert str(mapped).startswith("not authorized to READ topic a (principal User:bob): grant "
                                  "User:bob READ on topic a; not authorized to WRITE topic b ")


def test_a_refusal_wrapped_by_the_publisher_is_found_through_its_causes() -> None:
    wrapper = RuntimeError("3 of 3 records not acknowledged")
    wrapper.__cause__ = kafka_python.translate(TopicAuthorizationFailedError("recs"))
    mapped = authorization_error(wrapper, BOB, reads=["events"])
    assert str(mapped).startswith("not authorized to WRITE topic recs (principal User:bob)")


def test_an_idempotent_producer_refused_on_the_cluster_is_told_what_suffices() -> None:
    refusal = ClusterAuthorizationFailedError("The producer is not authorized to do idempotent "
                                              "sends")
    text = str(authorization_error(kafka_python.translate(refusal), BOB))
    assert text.startswith("not authorized on the cluster (principal User:bob): The producer")
    assert "WRITE on the topics it writes (or IDEMPOTENT_WRITE on the cluster)" in text


def test_other_errors_are_not_authorization_errors() -> None:
    assert authorization_error(kafka_python.translate(KafkaTimeoutError("slow")), BOB) is None
    assert authorization_error(ValueError("x"), BOB) is None
    timeout = ck.KafkaException(ck.KafkaError(ck.KafkaError._TIMED_OUT))
    assert authorization_error(confluent.translate(timeout), BOB) is None


@pytest.mark.parametrize(("code", "names", "expected"), [
    (ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, ("events",),
     "not authorized to READ topic events (principal User:bob): grant User:bob READ on topic "
     "events"),
    (ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, ("recs",),
     "not authorized to WRITE topic recs (principal User:bob): grant User:bob WRITE on topic "
     "recs"),
    (ck.KafkaError.GROUP_AUTHORIZATION_FAILED, (),
     "not authorized to READ group g (principal User:bob): grant User:bob READ on group g"),
    (ck.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, (),
     "not authorized to WRITE transactional id g-host (principal User:bob): grant User:bob "
     "WRITE on transactional id g-host"),
])
def test_librdkafka_refusals_map_to_the_same_messages(
    code: int, names: tuple[str, ...], expected: str,
) -> None:
    refusal = confluent.translate(ck.KafkaException(ck.KafkaError(code)), names=names)
    mapped = authorization_error(refusal, BOB, reads=["events"], group="g",
                                 transactional_id="g-host")
    assert str(mapped) == f"{expected} {DOC}"


# -- the SASL pre-flight against things that are no SASL listener -------------------------


@pytest.fixture
def server() -> Iterator[Callable[[bytes], str]]:
    """`server(reply)`: a one-connection server that reads the first request, sends
    `reply` and closes; returns its host:port."""
    sockets: list[socket.socket] = []

    def start(reply: bytes) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        sockets.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

        threading.Thread(target=serve, daemon=True).start()
        return f"127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for sock in sockets:
        sock.close()


def test_a_listener_that_hangs_up_is_explained(server: Callable[[bytes], str]) -> None:
    address = server(b"")
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    with pytest.raises(KafkaSecurityError, match=rf"SASL login to {address} got no answer .*is "
                                                 rf"{address} a SASL_PLAINTEXT listener\?"):
        check_sasl(address, security, timeout_s=5)


def test_a_listener_that_answers_no_kafka_frame_is_explained(
    server: Callable[[bytes], str],
) -> None:
    address = server(b"\x15\x03\x03\x00\x02\x02\x46")  # a TLS alert: the frame length is absurd
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    with pytest.raises(KafkaSecurityError, match=r"try --security-protocol SASL_SSL"):
        check_sasl(address, security, timeout_s=5)


def test_the_probe_leaves_unreachable_brokers_to_the_client() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        check_sasl(f"127.0.0.1:{port}", BOB)
