"""The local broker's optional listeners and extra properties, rendered without a JVM.

The SASL/ACL integration tests start a broker with SASL_PLAINTEXT and SASL_SSL
listeners, SCRAM users and an authorizer; every other broker must render exactly as
before (no SASL, no extra lines), and impossible settings are refused up front.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.common.errors import ConfigError
from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.kafka_io.local.config import BrokerConfig, scram_arguments

AUTHORIZER = ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer")


def rendered(config: BrokerConfig) -> str:
    broker = LocalBroker(config)
    broker._render()
    return broker.properties_path.read_text()


def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "broker.p12"
    path.write_bytes(b"not read when rendering")
    return path


def test_a_plain_broker_renders_no_sasl_and_no_extra_lines(tmp_path: Path) -> None:
    text = rendered(BrokerConfig(port=9192, controller_port=9193, data_dir=tmp_path))
    assert "listeners=PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193\n" in text
    assert "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n" in text
    for absent in ("sasl.", "ssl.", "SASL_PLAINTEXT://", "Extra properties"):
        assert absent not in text
    assert text.endswith("group.initial.rebalance.delay.ms=0\n")


def test_index_files_are_small_so_a_new_partition_zeroes_little_page_cache(
        tmp_path: Path) -> None:
    """Kafka maps each new segment's two indexes as sparse files; the first read
    through the mapping zeroes up to the disk's read-ahead over the holes, 16 MB per
    new partition at the 10 MB default (much of the benchmarks' slow first second)."""
    text = rendered(BrokerConfig(port=9192, controller_port=9193, data_dir=tmp_path))
    assert "\nlog.index.size.max.bytes=1048576\n" in text


def test_an_ssl_only_broker_renders_as_before(tmp_path: Path) -> None:
    text = rendered(BrokerConfig(port=9192, controller_port=9193, ssl_port=9194,
                                 ssl_keystore=keystore(tmp_path), ssl_keystore_password="pw",
                                 data_dir=tmp_path / "data"))
    assert ("listeners=PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193,"
            "SSL://127.0.0.1:9194\n") in text
    assert "protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL\n" in text
    assert "ssl.keystore.password=pw\n" in text
    assert "sasl." not in text
    assert text.endswith("group.initial.rebalance.delay.ms=0\n")


def test_sasl_listeners_scram_and_extra_properties_are_rendered(tmp_path: Path) -> None:
    config = BrokerConfig(
        port=9192, controller_port=9193, sasl_port=9195, sasl_ssl_port=9196,
        ssl_keystore=keystore(tmp_path), ssl_keystore_password="pw",
        scram_users=(("admin", "admin-secret"),),
        extra_properties=(AUTHORIZER, ("super.users", "User:admin;User:ANONYMOUS")),
        data_dir=tmp_path / "data")
    text = rendered(config)
    assert ("listeners=PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193,"
            "SASL_PLAINTEXT://127.0.0.1:9195,SASL_SSL://127.0.0.1:9196\n") in text
    assert ("protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\n") in text
    assert "inter.broker.listener.name=PLAINTEXT\n" in text
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512\n" in text
    for listener in ("sasl_plaintext", "sasl_ssl"):
        assert (f"listener.name.{listener}.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;\n") in text
    assert "ssl.keystore.password=pw\n" in text  # the SASL_SSL listener's certificate
    assert text.endswith("super.users=User:admin;User:ANONYMOUS\n")
    assert f"{AUTHORIZER[0]}={AUTHORIZER[1]}\n" in text
    assert config.sasl_bootstrap == "127.0.0.1:9195"
    assert config.sasl_ssl_bootstrap == "127.0.0.1:9196"
    assert scram_arguments(config) == ["--add-scram",
                                       "SCRAM-SHA-512=[name=admin,password=admin-secret]"]
    assert "admin-secret" not in repr(config)


@pytest.mark.parametrize(("settings", "message"), [
    ({"sasl_ssl_port": 9196}, "SASL_SSL listener .* needs ssl_keystore"),
    ({"scram_users": (("u", "p"),)}, "scram_users need a SASL listener"),
    ({"sasl_port": 9195, "scram_users": (("u", "p,w"),)}, "may hold only letters"),
    ({"sasl_port": 9195, "sasl_mechanism": "PLAIN"}, "must be one of SCRAM-SHA-256"),
    ({"sasl_port": 9193}, "ports must all differ"),
    ({"extra_properties": (("a", "b\nc=d"),)}, "is not one `key=value` line"),
])
def test_impossible_settings_are_refused(
    tmp_path: Path, settings: dict[str, object], message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        BrokerConfig(port=9192, controller_port=9193, data_dir=tmp_path,
                     **settings)  # type: ignore[arg-type]
