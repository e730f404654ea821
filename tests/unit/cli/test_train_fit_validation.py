"""`streamrec train --fit-validation`: the model and the baselines learn each user's
validation item; nothing is reported as a validation figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.cli.main import main
from streamrec.encoder.checkpoint import load_checkpoint


def test_fit_validation_is_recorded_and_reports_no_validation_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Users of kind 1 walk a, b, v_g, t_g; users of kind 2 walk x, v_g, t_g, w_g, so
    # v_g -> t_g is a transition of kind 2's validation item only: the last-item
    # transition baseline ranks kind 1's test item first only if it trained on them.
    log = tmp_path / "log.txt"
    log.write_text("".join(f"u{u} a\nu{u} b\nu{u} v{u % 3}\nu{u} t{u % 3}\n"
                           f"w{u} x\nw{u} v{u % 3}\nw{u} t{u % 3}\nw{u} w{u % 3}\n"
                           for u in range(45)), encoding="utf-8")
    base = ["train", "--data", str(log), "--format", "sasrec", "--preset", "demo",
            "--no-progress", "--epochs", "2", "--item-init", "random", "--json"]
    assert main([*base, "--out", str(tmp_path / "fit"), "--fit-validation"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["best_val_ndcg@10"] is None
    assert fit["best_epoch"] == 2
    assert load_checkpoint(tmp_path / "fit").meta["train_config"]["fit_validation"] is True
    assert main([*base, "--out", str(tmp_path / "held"), "--no-fit-validation"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["best_val_ndcg@10"] is not None
    # Kind 1 ranks t_g first (reciprocal rank 1) only after --fit-validation; every other
    # case is ranked last of the 9 items it may be (ties count against the baseline).
    assert fit["results"]["transition"]["full"]["MRR"] == pytest.approx((1 + 1 / 9) / 2)
    assert held["results"]["transition"]["full"]["MRR"] == pytest.approx(1 / 9)
