"""The worker images, checked without a container engine (none exists here).

Both Dockerfiles must run `streamrec worker` as a non-root user, expose the worker's
real metrics port, configure it only through variables its flags read, install from
PyPI only, copy every package folder, and carry a HEALTHCHECK that works: the test
runs its command against a real metrics server.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streamrec.worker.metrics import WorkerMetrics
from tests.conftest import free_port
from tests.unit.deploy import dockerfile
from tests.unit.deploy.surface import METRICS_PORT, REPO, env_problems

# Dockerfile -> (base image of the final stage, pip extra)
IMAGES = {
    "Dockerfile": ("python:3.11-slim", "cpu"),
    "deploy/docker/Dockerfile.cuda": ("nvidia/cuda:", "gpu"),
}
PACKAGE_DIRS = sorted(set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
                          ["tool"]["setuptools"]["package-dir"].values()))


def final_stage(name: str) -> list[dockerfile.Instruction]:
    return dockerfile.parse(REPO / name)[-1]


def healthcheck_command(name: str) -> list[str]:
    check = dockerfile.last(final_stage(name), "HEALTHCHECK")
    assert check is not None, f"{name} has no HEALTHCHECK"
    _, _, command = check.args.partition("CMD ")
    return dockerfile.Instruction("CMD", command).exec_form()


@pytest.mark.parametrize("name", IMAGES)
def test_runs_the_worker_as_a_non_root_user(name: str) -> None:
    stage = final_stage(name)
    assert stage[0].args.startswith(IMAGES[name][0])
    user = dockerfile.last(stage, "USER")
    assert user is not None, "no USER: the container would run as root"
    assert user.args.split(":")[0] not in {"root", "0"}
    assert dockerfile.last(stage, "ENTRYPOINT").exec_form() == ["streamrec"]
    assert dockerfile.last(stage, "CMD").exec_form() == ["worker"]


@pytest.mark.parametrize("name", IMAGES)
def test_exposes_the_worker_metrics_port(name: str) -> None:
    stage = final_stage(name)
    exposed = dockerfile.last(stage, "EXPOSE")
    assert exposed is not None
    assert exposed.args.split() == [str(METRICS_PORT)]
    assert dockerfile.env(stage).get("STREAMREC_METRICS_PORT", str(METRICS_PORT)) == str(
        METRICS_PORT)


@pytest.mark.parametrize("name", IMAGES)
def test_every_streamrec_variable_is_a_worker_flag(name: str) -> None:
    variables = {k: v for k, v in dockerfile.env(final_stage(name)).items()
                 if k.startswith("STREAMREC_")}
    assert "STREAMREC_MODEL" in variables
    assert env_problems("worker", variables) == []


@pytest.mark.parametrize("name", IMAGES)
def test_installs_streamrec_from_pypi_with_its_extra(name: str) -> None:
    runs = [i.args for stage in dockerfile.parse(REPO / name) for i in stage
            if i.keyword == "RUN" and "pip install" in i.args]
    assert any(f'".[{IMAGES[name][1]}]"' in run for run in runs), runs
    for run in runs:
        for option in ("--index-url", "--extra-index-url", " -i ", "--find-links", " -f "):
            assert option not in run, f"{name} installs from somewhere else than PyPI: {run}"


@pytest.mark.parametrize("name", IMAGES)
def test_copies_every_package_folder(name: str) -> None:
    copied = {i.args.split()[0] for stage in dockerfile.parse(REPO / name) for i in stage
              if i.keyword == "COPY" and not i.args.startswith("--from")}
    missing = set(PACKAGE_DIRS) - copied
    assert not missing, f"{name} does not copy package folders {missing}"
    assert {"pyproject.toml", "README.md"} <= {
        word for i in dockerfile.parse(REPO / name)[0] if i.keyword == "COPY"
        for word in i.args.split()}


def test_dockerignore_lets_every_copied_path_through() -> None:
    """`**` excludes everything; each path the Dockerfiles copy must be re-included."""
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text(encoding="utf-8")
             .splitlines() if ln.strip() and not ln.startswith("#")]
    included = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert lines[0] == "**"
    assert {"pyproject.toml", "README.md", *PACKAGE_DIRS} <= included
    for folder in PACKAGE_DIRS:
        assert (REPO / folder).is_dir()


@pytest.mark.parametrize("name", IMAGES)
def test_healthcheck_passes_on_a_live_worker_and_fails_without_one(name: str) -> None:
    command = healthcheck_command(name)
    assert command[0] == "python"
    assert "/healthz" in command[-1]
    server = WorkerMetrics().serve(0, "127.0.0.1")
    try:
        env = {"STREAMREC_METRICS_PORT": str(server.server_port), "PATH": "/usr/bin:/bin"}
        ok = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                            timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert ok.returncode == 0, ok.stderr
    env = {"STREAMREC_METRICS_PORT": str(free_port()), "PATH": "/usr/bin:/bin"}
    down = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                          timeout=30, check=False)
    assert down.returncode != 0


def test_dockerfile_parser_joins_continuations_and_splits_stages(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text('FROM a AS b\nRUN x \\\n    # note\n    && y\nFROM c\n'
                    'ENV A=1 \\\n    B="two words"\nCMD ["w"]\n', encoding="utf-8")
    first, second = dockerfile.parse(path)
    assert first[1] == dockerfile.Instruction("RUN", "x && y")
    assert dockerfile.env(second) == {"A": "1", "B": "two words"}
    assert dockerfile.last(second, "CMD").exec_form() == ["w"]
    assert dockerfile.last(second, "USER") is None
