"""The Kubernetes manifests agree with the worker and the CLI, checked by parsing them.

No cluster here: the test loads every manifest and holds it to the code. Probes hit
the worker's real endpoints on its real metrics port, every STREAMREC_* variable is
read by a flag of the command the container runs, container args parse with the
real `streamrec` parser, and the objects select and mount each other by the right names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.surface import DEPLOY, METRICS_PORT, env_problems, parse

K8S = DEPLOY / "k8s"
API_VERSIONS = {
    "ConfigMap": "v1", "Secret": "v1", "Service": "v1", "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1", "CronJob": "batch/v1", "PodDisruptionBudget": "policy/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}
ALERT_JOB = "streamrec"  # deploy/prometheus/rules.yml selects job="streamrec"


def documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path, doc))
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def deployments() -> list[dict[str, Any]]:
    return of_kind("Deployment")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """Every variable the container gets: envFrom's ConfigMaps and Secrets, then env
    (which wins); fieldRef values stand in as a sample pod name."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(one("Secret", source["secretRef"]["name"])["stringData"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[item["name"]] = one("ConfigMap", key["name"])["data"][key["key"]]
        elif "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            env[item["name"]] = one("Secret", key["name"])["stringData"][key["key"]]
        else:
            env[item["name"]] = "streamrec-pod-0"
    return env


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    out = []
    for arg in args:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        out.append(arg)
    return out


def streamrec_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, workload, container) of every container that runs `streamrec`."""
    for workload in [*deployments(), *of_kind("CronJob")]:
        spec = pod_spec(workload)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if "command" not in container:  # the image's ENTRYPOINT: streamrec
                yield workload["metadata"]["name"], workload, container


def test_every_manifest_parses_with_its_kind_and_api_version() -> None:
    kinds = [doc["kind"] for _, doc in documents()]
    assert sorted(kinds) == sorted([
        "ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Deployment",
        "Service", "ServiceMonitor", "PodDisruptionBudget", "CronJob"])
    for path, doc in documents():
        assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], path.name
        assert doc["metadata"]["name"], path.name


def test_container_args_are_real_commands_and_flags() -> None:
    commands = set()
    for name, _, container in streamrec_containers():
        args = expand(container["args"], container_env(container))
        try:
            parsed = parse(args, container_env(container))
        except ValueError as exc:
            pytest.fail(f"{name}/{container['name']}: {exc}")
        commands.add(parsed.command)
    assert commands == {"worker", "train"}


def test_every_streamrec_variable_is_read_by_the_container_command() -> None:
    seen = set()
    for name, _, container in streamrec_containers():
        env = container_env(container)
        command = container["args"][0]
        problems = env_problems(command, env)
        assert problems == [], f"{name}/{container['name']}: {problems}"
        seen.update(env)
    assert {"STREAMREC_SASL_USERNAME", "STREAMREC_SASL_PASSWORD", "STREAMREC_MODEL"} <= seen


def test_secret_holds_only_sasl_placeholders() -> None:
    (secret,) = of_kind("Secret")
    assert set(secret["stringData"]) == {"STREAMREC_SASL_USERNAME", "STREAMREC_SASL_PASSWORD"}
    assert all("CHANGE-ME" in v for v in secret["stringData"].values())
    assert "data" not in secret


@pytest.mark.parametrize("deployment", ["streamrec-worker", "streamrec-worker-gpu"])
def test_worker_probes_ports_and_shutdown(deployment: str) -> None:
    workload = one("Deployment", deployment)
    spec = pod_spec(workload)
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = container_env(container)
    assert ports["metrics"] == METRICS_PORT == int(env.get("STREAMREC_METRICS_PORT",
                                                           METRICS_PORT))
    probes = {kind: container[kind]["httpGet"] for kind in
              ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert ports.get(probe["port"], probe["port"]) == METRICS_PORT
    assert spec["terminationGracePeriodSeconds"] >= 60
    assert spec["securityContext"]["runAsNonRoot"] is True
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key]), key
    selector = workload["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels(workload).items()


def test_gpu_worker_asks_for_a_gpu_and_uses_it() -> None:
    (container,) = pod_spec(one("Deployment", "streamrec-worker-gpu"))["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container_env(container)["STREAMREC_DEVICE"] == "cuda"
    assert parse(["worker"], container_env(container)).device == "cuda"
    (cpu,) = pod_spec(one("Deployment", "streamrec-worker"))["containers"]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_deployments_do_not_select_each_others_pods() -> None:
    for workload in deployments():
        selector = workload["spec"]["selector"]["matchLabels"].items()
        name = workload["metadata"]["name"]
        others = [d for d in deployments() if d["metadata"]["name"] != name]
        assert others
        assert not any(selector <= pod_labels(o).items() for o in others)


def test_service_monitor_and_pdb_select_the_worker_pods_and_name_the_alert_job() -> None:
    (service,) = of_kind("Service")
    (monitor,) = of_kind("ServiceMonitor")
    (pdb,) = of_kind("PodDisruptionBudget")
    selected = [d["metadata"]["name"] for d in [*deployments(), *of_kind("CronJob")]
                if service["spec"]["selector"].items() <= pod_labels(d).items()]
    assert sorted(selected) == ["streamrec-worker", "streamrec-worker-gpu"]
    assert pdb["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == METRICS_PORT
    assert port["targetPort"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == ALERT_JOB


def test_retraining_writes_the_model_repository_the_workers_serve() -> None:
    (pvc,) = of_kind("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    claim = pvc["metadata"]["name"]
    cronjob = one("CronJob", "streamrec-retrain")
    spec = pod_spec(cronjob)
    (train,) = spec["containers"]
    args = parse(expand(train["args"], container_env(train)), container_env(train))
    assert args.command == "train"
    assert args.repo  # publishes a version and makes it current atomically
    events = one("ConfigMap", "streamrec-worker")["data"]["STREAMREC_EVENTS_TOPIC"]
    assert args.from_topic == events  # trains on the topic the workers consume
    mounts = {m["name"]: m["mountPath"] for m in train["volumeMounts"]}
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
    assert volumes[next(iter(mounts))] == claim
    assert Path(mounts["models"]) == args.out
    for workload in deployments():
        (worker,) = pod_spec(workload)["containers"]
        model = container_env(worker)["STREAMREC_MODEL"]
        assert Path(model) == args.out  # the workers serve (and hot-reload) that repository
        served = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in pod_spec(workload)["volumes"] if "persistentVolumeClaim" in v}
        (mount,) = [m for m in worker["volumeMounts"] if m["name"] in served]
        assert served[mount["name"]] == claim
        assert mount["readOnly"] is True
        assert Path(mount["mountPath"]) == Path(model)
