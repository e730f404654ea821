"""deploy/compose.yaml wires the stack the way the code expects, checked by parsing it.

No container engine runs here, so the test holds the file to the code: the worker's
variables are flags it reads, the commands parse, the trainer writes where the worker
reads, Prometheus scrapes the worker's metrics port with the rules, and every file
mounted into a container exists in the repository.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamrec.encoder.data import load_interactions
from tests.unit.deploy.surface import DEPLOY, METRICS_PORT, REPO, env_problems, parse

COMPOSE = DEPLOY / "compose.yaml"


def load() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return load()["services"]


def trainer_script() -> str:
    trainer = services()["trainer"]
    assert trainer["entrypoint"] == ["sh", "-c"]
    (script,) = trainer["command"]
    return script


def streamrec_commands(script: str) -> list[list[str]]:
    """The argv (after `streamrec`) of each `streamrec ...` line of a shell script."""
    return [shlex.split(line)[1:] for line in script.splitlines()
            if line.strip().startswith("streamrec ")]


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts (named volumes skipped)."""
    mounts = []
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE.parent / source).resolve(), target))
    return mounts


def test_the_stack_has_its_services() -> None:
    assert set(services()) >= {"kafka", "trainer", "worker", "prometheus", "grafana"}


def test_kafka_is_a_single_kraft_node_with_a_healthcheck() -> None:
    kafka = services()["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.0"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in advertised
    for name in re.findall(r"(\w+)://", env["KAFKA_LISTENERS"]):
        assert f"{name}:" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_worker_starts_after_kafka_is_healthy_and_the_model_is_trained() -> None:
    worker = services()["worker"]
    assert worker["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "trainer": {"condition": "service_completed_successfully"},
    }
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert (COMPOSE.parent / worker["build"]["context"] / "Dockerfile").is_file()
    assert "command" not in worker  # the image's CMD: `streamrec worker`


def test_worker_environment_names_real_worker_flags() -> None:
    env = services()["worker"]["environment"]
    assert env_problems("worker", env) == []
    assert env["STREAMREC_BOOTSTRAP"] == "kafka:9092"


def test_prometheus_scrapes_the_worker_metrics_port() -> None:
    stack = services()
    port = stack["worker"]["environment"].get("STREAMREC_METRICS_PORT", str(METRICS_PORT))
    assert int(port) == METRICS_PORT
    assert any(p.endswith(f":{port}") for p in stack["worker"]["ports"])
    prometheus = stack["prometheus"]
    (flag,) = [c for c in prometheus["command"] if c.startswith("--config.file=")]
    config_in_container = flag.split("=", 1)[1]
    host = {target: source for source, target in bind_mounts(prometheus)}
    config = host[str(Path(config_in_container).parent)] / Path(config_in_container).name
    assert config.is_file()
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    targets = [t for job in doc["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    assert targets == [f"worker:{port}"]
    for rules in doc["rule_files"]:
        assert (config.parent / rules).is_file()


def test_grafana_gets_the_provisioning_and_the_dashboard() -> None:
    grafana = services()["grafana"]
    mounts = {target: source for source, target in bind_mounts(grafana)}
    assert mounts["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/streamrec.yml").read_text(encoding="utf-8"))
    folder = provider["providers"][0]["options"]["path"]
    dashboards = [source for target, source in mounts.items()
                  if str(Path(target).parent) == folder]
    assert dashboards == [DEPLOY / "grafana" / "streamrec.json"]


@pytest.mark.parametrize("name", ["kafka", "trainer", "worker", "prometheus", "grafana",
                                  "replay"])
def test_every_bind_mount_exists_in_the_repo(name: str) -> None:
    for source, target in bind_mounts(services()[name]):
        assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
        assert REPO in source.parents


def test_trainer_commands_parse_and_write_the_model_the_worker_serves() -> None:
    script = trainer_script()
    (train,) = [argv for argv in streamrec_commands(script) if argv[0] == "train"]
    args = parse(train)
    assert args.data is not None
    assert args.format == "sasrec"
    model = services()["worker"]["environment"]["STREAMREC_MODEL"]
    assert args.repo  # a model repository: the version becomes current only when complete
    assert str(args.out) == model  # the repository the worker serves (and hot-reloads)
    assert "models:/models" in services()["trainer"]["volumes"]


def test_trainer_writes_logs_that_train_and_replay_can_read(tmp_path: Path) -> None:
    """Runs the trainer's data step (generated logs) into a temp dir and loads them."""
    (line,) = [ln for ln in trainer_script().splitlines() if ln.startswith("python -c")]
    code = shlex.split(line)[2].replace("/models/", f"{tmp_path}/")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    replay = services()["replay"]["command"]
    assert replay[0] == "replay"
    replay_args = parse(replay)
    for path in (parse(streamrec_commands(trainer_script())[0]).data, replay_args.data):
        local = tmp_path / Path(path).relative_to("/models")
        data = load_interactions(local, "sasrec")
        assert data.num_users == 2000
