"""Kafka security settings: flags and env, refusals, redaction, and the TLS pre-flight.

The pre-flight tests talk to a TLS server in a thread on 127.0.0.1 (no Kafka): a
wrong CA, a wrong host name and a plaintext port each give their own clear error.
A failed SASL login, which kafka-python only logs before its bootstrap timeout, is
replayed through that logger to check it is reported as what it is.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, SaslAuthenticationFailedError

from streamrec.cli.flags import add_security_flags, security_from_args
from streamrec.cli.main import main
from streamrec.common.errors import ConfigError
from streamrec.kafka_io.errors import KafkaSecurityError, KafkaUnavailableError
from streamrec.kafka_io.kafka_python.base import open_client
from streamrec.kafka_io.probe import bootstrap_addresses, check_tls
from streamrec.kafka_io.security import KafkaSecurity
from tests.tls import CertPair, make_ca, make_server_cert


def parse(*argv: str) -> KafkaSecurity:
    parser = argparse.ArgumentParser()
    add_security_flags(parser)
    return security_from_args(parser.parse_args(list(argv)))


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """An existing file to name as a CA/cert/key (its content is not read here)."""
    path = tmp_path / "any.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


# -- kwargs per protocol -------------------------------------------------------------


def test_plaintext_passes_only_the_protocol() -> None:
    assert KafkaSecurity().client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_ssl_passes_files_as_strings_and_hostname_check(pem: Path) -> None:
    kwargs = KafkaSecurity(protocol="SSL", ssl_cafile=pem, ssl_certfile=pem, ssl_keyfile=pem,
                           ssl_password="k3y", ssl_check_hostname=False).client_kwargs()
    assert kwargs == {"security_protocol": "SSL", "ssl_cafile": str(pem),
                      "ssl_certfile": str(pem), "ssl_keyfile": str(pem),
                      "ssl_password": "k3y", "ssl_check_hostname": False}


def test_sasl_plaintext_defaults_to_plain_and_passes_credentials() -> None:
    kwargs = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="u",
                           sasl_password="p").client_kwargs()
    assert kwargs == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                      "sasl_plain_username": "u", "sasl_plain_password": "p"}


def test_sasl_ssl_passes_both_tls_and_scram(pem: Path) -> None:
    kwargs = KafkaSecurity(protocol="SASL_SSL", ssl_cafile=pem, sasl_mechanism="SCRAM-SHA-512",
                           sasl_username="u", sasl_password="p").client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["ssl_cafile"] == str(pem)
    assert kwargs["ssl_check_hostname"] is True
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("u", "p")


# -- flags and environment -------------------------------------------------------------


def test_flags_build_the_security(pem: Path) -> None:
    security = parse("--security-protocol", "SASL_SSL", "--ssl-cafile", str(pem),
                     "--no-ssl-check-hostname", "--sasl-mechanism", "SCRAM-SHA-256",
                     "--sasl-username", "svc", "--sasl-password", "pw")
    assert security == KafkaSecurity(
        protocol="SASL_SSL", ssl_cafile=pem, ssl_check_hostname=False,
        sasl_mechanism="SCRAM-SHA-256", sasl_username="svc", sasl_password="pw")


def test_env_is_the_fallback_and_flags_win(pem: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("STREAMREC_SASL_USERNAME", "env-user")
    monkeypatch.setenv("STREAMREC_SASL_PASSWORD", "env-secret")
    from_env = parse()
    assert (from_env.protocol, from_env.sasl_username, from_env.sasl_password) == (
        "SASL_PLAINTEXT", "env-user", "env-secret")
    assert parse("--sasl-username", "flag-user").sasl_username == "flag-user"
    monkeypatch.setenv("STREAMREC_SECURITY_PROTOCOL", "SSL")
    monkeypatch.delenv("STREAMREC_SASL_USERNAME")
    monkeypatch.delenv("STREAMREC_SASL_PASSWORD")
    monkeypatch.setenv("STREAMREC_SSL_CAFILE", str(pem))
    monkeypatch.setenv("STREAMREC_NO_SSL_CHECK_HOSTNAME", "true")
    assert parse() == KafkaSecurity(protocol="SSL", ssl_cafile=pem, ssl_check_hostname=False)


def test_default_is_plaintext() -> None:
    assert parse() == KafkaSecurity()


def test_bad_env_protocol_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError, match=r"STREAMREC_SECURITY_PROTOCOL.*'TLS'"):
        parse()


# -- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--security-protocol", "SASL_SSL"], "needs --sasl-username .* and --sasl-password"),
    (["--security-protocol", "SASL_PLAINTEXT", "--sasl-username", "u"],
     "needs --sasl-password"),
    (["--security-protocol", "SSL", "--ssl-certfile", "{pem}"],
     "--ssl-certfile needs --ssl-keyfile"),
    (["--security-protocol", "SSL", "--ssl-keyfile", "{pem}"],
     "--ssl-keyfile needs --ssl-certfile"),
    (["--security-protocol", "SSL", "--ssl-password", "x"], "--ssl-password decrypts"),
    (["--ssl-cafile", "{pem}"], "--ssl-cafile .* no effect with --security-protocol PLAINTEXT"),
    (["--security-protocol", "SSL", "--sasl-username", "u"],
     "--sasl-username .* no effect with --security-protocol SSL: use SASL_PLAINTEXT or SASL_SSL"),
    (["--no-ssl-check-hostname"], "--no-ssl-check-hostname .* no effect"),
])
def test_incomplete_or_ignored_settings_are_refused(
    argv: list[str], message: str, pem: Path,
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(*(a.format(pem=pem) for a in argv))


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.pem"
    with pytest.raises(ConfigError, match=rf"--ssl-cafile \(STREAMREC_SSL_CAFILE\): {missing} "
                                          "does not exist"):
        parse("--security-protocol", "SSL", "--ssl-cafile", str(missing))


def test_worker_command_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--model", "m", "--security-protocol", "SASL_SSL",
                 "--sasl-username", "u"]) == 2
    assert "--sasl-password" in capsys.readouterr().err


def test_unloadable_ca_file_is_a_config_error(pem: Path) -> None:
    with pytest.raises(ConfigError, match=r"--ssl-cafile .*cannot load .* as PEM"):
        KafkaSecurity(protocol="SSL", ssl_cafile=pem).ssl_context()


# -- redaction ------------------------------------------------------------------------


def test_passwords_never_in_repr_or_redacted(pem: Path) -> None:
    security = KafkaSecurity(protocol="SASL_SSL", ssl_cafile=pem, ssl_certfile=pem,
                             ssl_keyfile=pem, ssl_password="tls-secret-1",
                             sasl_username="svc", sasl_password="sasl-secret-2")
    shown = repr(security) + str(security) + repr(security.redacted())
    assert "tls-secret-1" not in shown
    assert "sasl-secret-2" not in shown
    assert security.redacted()["ssl_password"] == "***"
    assert security.redacted()["sasl_password"] == "***"
    assert security.redacted()["sasl_username"] == "svc"
    assert KafkaSecurity().redacted()["sasl_password"] is None


# -- the TLS pre-flight ------------------------------------------------------------------


def test_bootstrap_addresses() -> None:
    assert bootstrap_addresses("a:1, b:2,[::1]:3") == [("a", 1), ("b", 2), ("::1", 3)]
    with pytest.raises(ConfigError, match="not host:port"):
        bootstrap_addresses("kafka")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPair]:
    directory = tmp_path_factory.mktemp("tls")
    ca = make_ca(directory, "ca")
    return {"ca": ca, "wrong": make_ca(directory, "wrong"),
            "server": make_server_cert(directory, ca),
            "elsewhere": make_server_cert(directory, ca, "elsewhere", "DNS:kafka.example")}


@contextlib.contextmanager
def server(tls: CertPair | None) -> Iterator[str]:
    """A one-thread server on 127.0.0.1: TLS with `tls`, else closes on first bytes."""
    listener = socket.create_server(("127.0.0.1", 0))
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)

    done = threading.Event()
    listener.settimeout(0.05)  # accept() wakes up to see `done`

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            with conn:
                try:
                    if context is None:
                        conn.recv(4)  # a Kafka PLAINTEXT listener drops a TLS hello
                    else:
                        context.wrap_socket(conn, server_side=True).close()
                except OSError:
                    pass  # the client refused our certificate: expected in some tests

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()


def test_probe_passes_with_the_right_ca(tls_files: dict[str, CertPair]) -> None:
    with server(tls_files["server"]) as address:
        check_tls(address, KafkaSecurity(protocol="SSL", ssl_cafile=tls_files["ca"].cert))
        host_port = address.replace("127.0.0.1", "localhost")
        check_tls(host_port, KafkaSecurity(protocol="SSL", ssl_cafile=tls_files["ca"].cert))


def test_probe_names_the_ca_flag_on_a_wrong_ca(tls_files: dict[str, CertPair]) -> None:
    wrong = tls_files["wrong"].cert
    with server(tls_files["server"]) as address, pytest.raises(KafkaSecurityError) as caught:
        check_tls(address, KafkaSecurity(protocol="SSL", ssl_cafile=wrong))
    text = str(caught.value)
    assert f"TLS handshake with {address} failed: certificate verify failed" in text
    assert f"check --ssl-cafile: {wrong}" in text
    assert isinstance(caught.value, KafkaUnavailableError)


def test_probe_explains_a_host_name_mismatch(tls_files: dict[str, CertPair]) -> None:
    ca = tls_files["ca"].cert
    with server(tls_files["elsewhere"]) as address:
        with pytest.raises(KafkaSecurityError,
                           match=r"does not name 127\.0\.0\.1.*--no-ssl-check-hostname"):
            check_tls(address, KafkaSecurity(protocol="SSL", ssl_cafile=ca))
        check_tls(address, KafkaSecurity(protocol="SSL", ssl_cafile=ca, ssl_check_hostname=False))


def test_probe_asks_whether_the_port_speaks_tls(tls_files: dict[str, CertPair]) -> None:
    with server(None) as address, pytest.raises(KafkaSecurityError,
                                                match=r"is .* an SSL listener"):
        check_tls(address, KafkaSecurity(protocol="SSL", ssl_cafile=tls_files["ca"].cert))


def test_probe_leaves_unreachable_brokers_to_the_client(tls_files: dict[str, CertPair]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        check_tls(f"127.0.0.1:{port}", KafkaSecurity(protocol="SSL",
                                                     ssl_cafile=tls_files["ca"].cert))


# -- bootstrap timeouts: the cause kafka-python only logs ---------------------------------


def fake_bootstrap(failure: Exception) -> Callable[[], None]:
    """A client constructor that fails to bootstrap the way kafka-python 3 does."""

    def build() -> None:
        log = logging.getLogger("kafka.net.manager")
        log.warning("Bootstrap connection to %s failed: %s (backoff %.2f secs)",
                    "bootstrap-0", failure, 1.0)
        log.error("Bootstrap failed: %s", KafkaTimeoutError("Unable to bootstrap"))
        raise KafkaTimeoutError("Unable to bootstrap from kafka:9093")

    return build


def test_failed_sasl_login_is_reported_as_authentication() -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                             sasl_username="svc", sasl_password="wrong")
    failure = SaslAuthenticationFailedError("Authentication failed: Invalid username or password")
    with pytest.raises(KafkaSecurityError, match=r"authentication to kafka:9093 failed: .*"
                                                 r"Invalid username or password — check "
                                                 r"--sasl-mechanism \(SCRAM-SHA-256\)"):
        open_client("kafka:9093", security, fake_bootstrap(failure))


def test_unreachable_broker_names_the_last_connection_error() -> None:
    failure = KafkaConnectionError("Connection refused")
    with pytest.raises(KafkaUnavailableError, match=r"no Kafka broker answers at kafka:9093: "
                                                    r".*last error: .*Connection refused") as got:
        open_client("kafka:9093", KafkaSecurity(), fake_bootstrap(failure))
    assert not isinstance(got.value, KafkaSecurityError)
