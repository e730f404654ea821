"""The worker over TLS against a real broker, and clear, fast refusals of a wrong CA.

The test makes a throw-away CA and a broker certificate for 127.0.0.1/localhost with
`openssl`, and starts its own `LocalBroker` (own ports and data dir, not the session
broker) with a PLAINTEXT and an SSL listener. The worker then consumes events and
publishes recommendations over the SSL listener only; with a second CA that did not
sign the broker's certificate, the worker and every client factory fail at once with
an error naming the bootstrap and `--ssl-cafile`, and `streamrec worker` exits 2.
`train --from-topic` reads its events over the same listener with the same flags.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamrec.cli.flags import load_data
from streamrec.cli.main import build_parser
from streamrec.kafka_io.clients import ensure_topics, make_admin, make_consumer, make_producer
from streamrec.kafka_io.errors import KafkaSecurityError
from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.kafka_io.local.config import BrokerConfig
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from tests.conftest import BROKER_START_TIMEOUT_S, free_port
from tests.integration.helpers import (
    assert_recommendations_avoid_history,
    consume_until,
    event,
    latest_by_user,
)
from tests.tls import make_ca, make_pkcs12, make_server_cert

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

FAIL_FAST_S = 30.0  # the bound the requirement sets on a wrong-CA start


@dataclass(frozen=True)
class SslBroker:
    """A broker with both listeners, the CA that signed it and one that did not."""

    plaintext: str  # host:port of the PLAINTEXT listener
    ssl: str  # host:port of the SSL listener
    ca: Path
    wrong_ca: Path

    def security(self, ca: Path | None = None) -> KafkaSecurity:
        """SSL with `ca` (default: the right CA)."""
        return KafkaSecurity(protocol="SSL", ssl_cafile=ca or self.ca)


@pytest.fixture(scope="module")
def ssl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SslBroker]:
    tls = tmp_path_factory.mktemp("tls")
    ca = make_ca(tls, "ca")
    wrong = make_ca(tls, "wrong-ca")
    password = uuid.uuid4().hex
    keystore = make_pkcs12(tls, make_server_cert(tls, ca), ca, password)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    port, controller_port, ssl_port = sorted(ports)
    broker = LocalBroker(BrokerConfig(
        port=port, controller_port=controller_port, ssl_port=ssl_port,
        ssl_keystore=keystore, ssl_keystore_password=password,
        data_dir=tmp_path_factory.mktemp("kafka-ssl")))
    try:
        plaintext = broker.start(timeout_s=BROKER_START_TIMEOUT_S)
        yield SslBroker(plaintext, f"127.0.0.1:{ssl_port}", ca.cert, wrong.cert)
    finally:
        broker.stop()


def worker_config(bootstrap: str, model_dir: Path, security: KafkaSecurity) -> WorkerConfig:
    suffix = uuid.uuid4().hex[:8]
    return WorkerConfig(
        model_dir=model_dir, bootstrap=bootstrap, events_topic=f"events-{suffix}",
        recommendations_topic=f"recs-{suffix}", dead_letter_topic=f"dlq-{suffix}",
        group_id=f"group-{suffix}", metrics_port=-1, max_batch=16, max_wait_ms=20, k=5,
        device="cpu", security=security)


@pytest.mark.slow
def test_worker_consumes_and_publishes_over_ssl(
    ssl_broker: SslBroker, tiny_checkpoint: Path,
) -> None:
    security = ssl_broker.security()
    config = worker_config(ssl_broker.ssl, tiny_checkpoint, security)
    ensure_topics(ssl_broker.ssl, {config.events_topic: 2}, security=security)
    history = {f"user-{u}": [f"i{(u * 5 + step) % 40 + 1}" for step in range(3)]
               for u in range(12)}
    producer = make_producer(ssl_broker.ssl, "security-test-producer", security)
    for user, items in history.items():
        for item in items:
            key, value = event(user, item)
            producer.send(config.events_topic, key=key, value=value)
    producer.flush()
    producer.close()

    worker = Worker(config)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    latest: dict[str, dict[str, Any]] = {}

    try:
        consume_until(ssl_broker.ssl, config.recommendations_topic,
                      lambda records: latest_by_user(records, latest) >= set(history),
                      security=security)
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert_recommendations_avoid_history(latest, history, k=5)


def test_wrong_ca_fails_the_worker_fast_with_the_cause(
    ssl_broker: SslBroker, tiny_checkpoint: Path,
) -> None:
    security = ssl_broker.security(ssl_broker.wrong_ca)
    worker = Worker(worker_config(ssl_broker.ssl, tiny_checkpoint, security))
    began = time.monotonic()
    with pytest.raises(KafkaSecurityError) as caught:
        worker.run()
    assert time.monotonic() - began < FAIL_FAST_S
    text = str(caught.value)
    assert f"TLS handshake with {ssl_broker.ssl} failed: certificate verify failed" in text
    assert f"check --ssl-cafile: {ssl_broker.wrong_ca}" in text


@pytest.mark.parametrize("factory", ["admin", "producer", "consumer"])
def test_every_client_factory_refuses_a_wrong_ca_fast(ssl_broker: SslBroker, factory: str) -> None:
    security = ssl_broker.security(ssl_broker.wrong_ca)
    make = {
        "admin": lambda: make_admin(ssl_broker.ssl, "t", security),
        "producer": lambda: make_producer(ssl_broker.ssl, "t", security),
        "consumer": lambda: make_consumer(ssl_broker.ssl, "g", "t", security),
    }[factory]
    began = time.monotonic()
    with pytest.raises(KafkaSecurityError, match="certificate verify failed"):
        make()
    assert time.monotonic() - began < FAIL_FAST_S


def test_tls_to_the_plaintext_listener_is_explained(ssl_broker: SslBroker) -> None:
    began = time.monotonic()
    with pytest.raises(KafkaSecurityError,
                       match=rf"{ssl_broker.plaintext} an SSL listener \(not PLAINTEXT\)"):
        make_admin(ssl_broker.plaintext, "t", ssl_broker.security())
    assert time.monotonic() - began < FAIL_FAST_S


def test_worker_command_exits_2_on_a_wrong_ca(
    ssl_broker: SslBroker, tiny_checkpoint: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", "worker", "--bootstrap", ssl_broker.ssl,
         "--model", str(tiny_checkpoint), "--device", "cpu", "--metrics-port", "-1",
         "--events-topic", f"events-{uuid.uuid4().hex[:8]}",
         "--security-protocol", "SSL", "--ssl-cafile", str(ssl_broker.wrong_ca)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("streamrec worker: error: TLS handshake with ")
    assert "certificate verify failed" in last
    assert f"check --ssl-cafile: {ssl_broker.wrong_ca}" in last


def test_train_from_topic_reads_over_ssl(ssl_broker: SslBroker, tmp_path: Path) -> None:
    security = ssl_broker.security()
    topic = f"events-{uuid.uuid4().hex[:8]}"
    ensure_topics(ssl_broker.ssl, {topic: 1}, security=security)
    producer = make_producer(ssl_broker.ssl, "security-test-producer", security)
    for n in range(6):
        key, value = event(f"u{n % 2}", f"i{n}", ts=1_700_000_000_000 + n)
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    args = build_parser().parse_args([
        "train", "--from-topic", topic, "--bootstrap", ssl_broker.ssl, "--out", str(tmp_path),
        "--security-protocol", "SSL", "--ssl-cafile", str(ssl_broker.ca)])
    data = load_data(args)
    assert sorted(data.users) == ["u0", "u1"]
    assert data.num_interactions == 6
