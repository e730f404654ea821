"""Model repositories: versions published atomically, the current one served."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamrec.cli.main import build_parser
from streamrec.common.errors import StreamrecError
from streamrec.encoder import repository
from streamrec.encoder.checkpoint import load_checkpoint
from streamrec.encoder.errors import CheckpointError


def test_resolve_follows_current_and_leaves_a_checkpoint_directory_alone(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "v1").mkdir(parents=True)
    (repo / "CURRENT").write_text("v1\n")
    assert repository.resolve(repo) == repo / "v1"
    assert repository.resolve(repo / "v1") == repo / "v1"  # no CURRENT: itself


@pytest.mark.parametrize(("pointer", "problem"), [
    ("", "must name"), ("../elsewhere", "must name"), (".incoming-x", "must name"),
    ("v9", "not a directory"),
])
def test_a_current_pointer_that_names_nothing_usable_is_refused(
    tmp_path: Path, pointer: str, problem: str,
) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "CURRENT").write_text(pointer)
    with pytest.raises(CheckpointError, match=problem):
        repository.resolve(tmp_path)


def test_publish_moves_the_version_in_and_points_current_at_it_last(tmp_path: Path) -> None:
    first = repository.incoming(tmp_path)
    (first / "config.json").write_text("{}")
    assert repository.publish(tmp_path, first, "v1") == tmp_path / "v1"
    again = repository.incoming(tmp_path)
    assert repository.publish(tmp_path, again, "v1") == tmp_path / "v1-2"  # same version name
    assert repository.current_version(tmp_path) == "v1-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", "v1", "v1-2"]


def train(data: Path, repo: Path, *extra: str) -> dict:
    args = build_parser().parse_args([
        "train", "--data", str(data), "--format", "sasrec", "--preset", "demo",
        "--epochs", "1", "--out", str(repo), "--no-progress", "--json", *extra])
    return args.handler(args)


def test_train_publishes_each_run_as_a_new_current_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "log.txt"
    lines = (f"u{u} i{(u * 7 + t) % 60 + 1}\n" for u in range(150) for t in range(6))
    data.write_text("".join(lines))
    repo = tmp_path / "models"
    assert train(data, repo, "--repo", "--seed", "1") == 0
    first = json.loads(capsys.readouterr().out)["checkpoint"]
    v1 = repository.current_version(repo)
    assert train(data, repo, "--seed", "2") == 0  # CURRENT exists: --repo implied
    v2 = repository.current_version(repo)
    assert v1 != v2
    assert first.startswith(str(repo / v1))
    assert load_checkpoint(repo).path == repo / v2  # what a worker given the repo serves
    assert {p.name for p in repo.iterdir()} == {"CURRENT", v1, v2}

    with pytest.raises((StreamrecError, ValueError)):  # a run that fails publishes nothing
        train(data, repo, "--max-len", "0")
    assert repository.current_version(repo) == v2
    assert {p.name for p in repo.iterdir()} == {"CURRENT", v1, v2}


@pytest.mark.slow
def test_train_follow_publishes_a_version_per_interval_until_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "log.txt"
    lines = (f"u{u} i{(u * 7 + t) % 60 + 1}\n" for u in range(150) for t in range(6))
    data.write_text("".join(lines))
    repo = tmp_path / "models"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli.main", "train", "--data", str(data), "--format",
         "sasrec", "--preset", "demo", "--epochs", "1", "--out", str(repo), "--repo",
         "--follow", "--every", "1s", "--no-progress", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len([p for p in repo.glob("*") if p.is_dir() and not p.name.startswith(".")]) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no second version within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    versions = sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(versions) >= 2
    assert (repo / repository.current_version(repo)) in versions
    assert load_checkpoint(repo).path == repo / repository.current_version(repo)


def test_train_stores_queries_and_the_approximate_index_it_was_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("faiss")
    data = tmp_path / "log.txt"
    data.write_text("".join(f"u{u} i{(u * 7 + t) % 90 + 1}\n" for u in range(150)
                            for t in range(6)))
    assert train(data, tmp_path / "exact", "--seed", "1") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["index"] is None  # auto on 90 items: exact, nothing stored
    exact = load_checkpoint(tmp_path / "exact")
    assert exact.queries is not None
    assert exact.queries.shape == (150, exact.config.hidden)
    assert not (tmp_path / "exact" / "index.faiss").exists()

    assert train(data, tmp_path / "ivf", "--seed", "1", "--index", "ivf", "--nlist", "2",
                 "--nprobe", "2") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["index"]["kind"] == "ivf"
    assert summary["index"]["recall_at_10"] == 1.0
    listed = json.loads((tmp_path / "ivf" / "config.json").read_text())["sha256"]
    assert {"index.faiss", "index.json", "queries.safetensors"} <= set(listed)
