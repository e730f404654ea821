"""The kafka-python adapter polls through a broker that went away, as librdkafka does.

kafka-python 3 raises its coordinator lookup's connection error out of `poll` (seen in
tests/integration/test_never_hang.py: a SIGTERM after the broker stopped exited 2 as if
misconfigured). A retriable error is logged and the poll returns nothing after its
timeout; a refusal or any other error still stops the caller.
"""

from __future__ import annotations

import logging
import time

import pytest
from kafka.errors import IllegalStateError, KafkaConnectionError, TopicAuthorizationFailedError

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.kafka_python.consumer import TRANSIENT_WAIT_S, KafkaPythonConsumer


class Raising:
    """kafka-python's consumer whose every `poll` raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.polls = 0

    def poll(self, timeout_ms: int) -> dict:
        self.polls += 1
        raise self.error


def consumer_raising(error: Exception) -> tuple[KafkaPythonConsumer, Raising]:
    consumer = KafkaPythonConsumer.__new__(KafkaPythonConsumer)
    inner = Raising(error)
    consumer._c = inner  # type: ignore[assignment]
    consumer._warned_at = None
    return consumer, inner


def test_a_connection_error_returns_nothing_after_the_timeout_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    consumer, inner = consumer_raising(KafkaConnectionError("111 ECONNREFUSED"))
    name = "streamrec.kafka_io.kafka_python.consumer"
    caplog.set_level(logging.WARNING, name)
    start = time.monotonic()
    assert consumer.poll(0.05) == {}
    assert consumer.poll(0.05) == {}
    assert time.monotonic() - start >= 0.09  # waited out each timeout: no busy loop
    assert inner.polls == 2
    # Only this logger's: a client an earlier test left behind may log meanwhile (in CI a
    # worker's librdkafka consumer warned about its stopped broker here).
    warnings = [r.getMessage() for r in caplog.records if r.name == name]
    assert warnings == ["consumer: KafkaConnectionError: 111 ECONNREFUSED (retrying)"]


def test_a_failed_zero_timeout_poll_still_waits_a_little() -> None:
    consumer, _ = consumer_raising(KafkaConnectionError("111 ECONNREFUSED"))
    start = time.monotonic()
    assert consumer.poll(0.0) == {}
    assert time.monotonic() - start >= TRANSIENT_WAIT_S * 0.9  # a poll(0) loop cannot spin


@pytest.mark.parametrize("error", [
    TopicAuthorizationFailedError({"events"}),  # a refusal: retrying cannot help
    IllegalStateError("not retriable"),
])
def test_other_errors_still_raise(error: Exception) -> None:
    consumer, _ = consumer_raising(error)
    with pytest.raises(KafkaClientError) as raised:
        consumer.poll(0.01)
    assert raised.value.__cause__ is error
