"""`streamrec train` under torchrun: two CPU processes train what one process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.cli.main import main
from streamrec.encoder import repository
from streamrec.encoder.checkpoint import load_checkpoint
from streamrec.encoder.data import load_interactions
from streamrec.encoder.evaluate import ModelScorer, evaluate
from streamrec.encoder.split import leave_one_out
from streamrec.encoder.synthetic import generate, write_sasrec

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
# Random item init and 2 epochs: the model is still learning fast, so it shows how much
# data went into it. Measured on this log (test NDCG@10): one process 0.760 (seeds 42, 1,
# 2: 0.760, 0.776, 0.765), two processes 0.761; two that never average their gradients
# (each trains on its half of every batch) 0.643.
FLAGS = ["--format", "sasrec", "--preset", "demo", "--item-init", "random", "--epochs", "2",
         "--patience", "0", "--threads", "1", "--device", "cpu", "--no-progress", "--json"]
NOISE = 0.05  # 3x the spread over seeds; 2.4x below the gap of the unsynchronised run


def torchrun_env() -> dict[str, str]:
    """This environment without a torchrun launch of its own around it."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}}
    return env | {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_processes_publish_one_checkpoint_as_good_as_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_sasrec(tmp_path / "log.txt", generate(
        600, items_per_cluster=25, clusters=12, seed=5, min_len=5, max_len=14))
    assert main(["train", "--data", str(data), *FLAGS, "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out)
    repo = tmp_path / "models"
    proc = subprocess.run(
        [*TORCHRUN, "2", "-m", "streamrec.cli.main", "train", "--data", str(data), *FLAGS,
         "--out", str(repo), "--repo"],
        capture_output=True, text=True, timeout=240, env=torchrun_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = json.loads(proc.stdout)  # process 0 alone prints
    # One version, made current; the other process left nothing (no incoming directory).
    version = repository.current_version(repo)
    assert sorted(p.name for p in repo.iterdir()) == sorted([repository.CURRENT, version])
    ckpt = load_checkpoint(repo)
    assert ckpt.meta["processes"] == 2
    assert [row["epoch"] for row in ckpt.meta["history"]] == [1, 2]
    test = leave_one_out(load_interactions(data, "sasrec", vocab=ckpt.vocab)).test
    scored = evaluate(ModelScorer(ckpt.model), test, protocol="full", ks=(10,)).ndcg[10]
    assert scored == pytest.approx(two["results"]["sasrec"]["full"]["NDCG@10"], abs=1e-6)
    assert abs(scored - one["results"]["sasrec"]["full"]["NDCG@10"]) < NOISE
    assert abs(two["best_val_ndcg@10"] - one["best_val_ndcg@10"]) < NOISE


def test_follow_is_refused_under_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    argv = ["train", "--data", str(tmp_path / "log.txt"), *FLAGS, "--out", str(tmp_path / "r"),
            "--repo", "--follow"]
    assert main(argv) == 2
    assert "under torchrun" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
