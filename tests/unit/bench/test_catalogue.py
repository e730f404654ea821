"""The grown catalogue keeps the trained model and rows, and grows around its clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from streamrec.bench.catalogue import grow_checkpoint, grow_table
from streamrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab


def test_copies_stay_near_their_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 8)).astype(np.float32) * 5
    table = np.vstack([np.zeros((1, 8)), centres[rng.integers(0, 20, 2000)]
                       + rng.standard_normal((2000, 8)) * 0.3]).astype(np.float32)
    grown = grow_table(table, 10_000)
    assert grown.shape == (10_001, 8)
    assert np.array_equal(grown[:2001], table)
    nearest = ((grown[2001:, None, :] - centres[None]) ** 2).sum(-1).min(axis=1)
    assert np.sqrt(nearest).mean() < 1.0  # centres are ~7 apart; the spread is 0.3 per dim


def test_grown_checkpoint_serves_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SASRec(ModelConfig(num_items=400, max_len=6, hidden=8, heads=1)).eval()
    src = save_checkpoint(tmp_path / "src", model, ItemVocab([f"i{i}" for i in range(400)]),
                          np.ones(401, np.float32))
    out = grow_checkpoint(src, 5000, tmp_path / "grown")
    grown = load_checkpoint(out)
    assert len(grown.vocab) == 5000
    assert grown.vocab.row("i7") == 8
    history = torch.tensor([[1, 2, 3, 400]])
    assert torch.equal(model.encode(history)[0], grown.model.encode(history)[0])
    assert grow_checkpoint(src, 5000, out) == out  # cached
