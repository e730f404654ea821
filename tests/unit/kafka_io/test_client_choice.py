"""Which Kafka adapter a command gets: `--kafka-client`, the env, and `auto`."""

from __future__ import annotations

import pytest

from streamrec.common.errors import ConfigError
from streamrec.kafka_io import clients
from streamrec.kafka_io.clients import CLIENT_ENV, resolve_client


def test_auto_prefers_confluent_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CLIENT_ENV, raising=False)
    monkeypatch.setattr(clients, "confluent_installed", lambda: True)
    assert resolve_client("auto") == "confluent"
    assert resolve_client() == "confluent"  # no flag, no env: auto


def test_auto_falls_back_to_kafka_python_without_confluent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clients, "confluent_installed", lambda: False)
    assert resolve_client("auto") == "kafka-python"
    with pytest.raises(ConfigError, match="confluent-kafka is not installed"):
        resolve_client("confluent")


def test_the_env_chooses_and_a_wrong_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLIENT_ENV, "kafka-python")
    assert resolve_client() == "kafka-python"
    with pytest.raises(ConfigError, match="must be one of"):
        resolve_client("librdkafka")
