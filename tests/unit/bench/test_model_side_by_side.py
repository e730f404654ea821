"""`bench model --against`: two checkpoints' model stage alternated, medians compared B / A."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.bench import model as model_bench
from streamrec.bench.contenders import Stream
from streamrec.encoder.checkpoint import save_checkpoint
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab


def checkpoint(path: Path, hidden: int) -> Path:
    torch.manual_seed(0)
    vocab = ItemVocab([f"i{i}" for i in range(30)])
    model = SASRec(ModelConfig(num_items=len(vocab), max_len=6, hidden=hidden, blocks=1,
                               heads=1, dropout=0.0, emb_dropout=0.0)).eval()
    return save_checkpoint(path, model, vocab, np.ones(len(vocab) + 1, dtype=np.float32))


def test_the_two_models_alternate_and_the_ratio_is_b_over_a_medians(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = checkpoint(tmp_path / "a", 8), checkpoint(tmp_path / "b", 16)
    rng = np.random.default_rng(0)
    stream = Stream([f"u{u}" for u in rng.integers(0, 12, 200)],
                    [f"i{i}" for i in rng.integers(0, 30, 200)],
                    np.arange(200, dtype=np.int64), "test")
    monkeypatch.setattr(model_bench, "load_stream", lambda events, users: stream)
    # Per batch: rounds x (A, B). A runs at 100, 300, 200 (median 200), B at 50, 10, 100
    # (median 50); every measurement still runs the real model stage once.
    speeds: Iterator[float] = iter([100, 50, 300, 10, 200, 100] * 2)
    served: list[int] = []

    def fake_rate(work: Callable[[], object], units: int, seconds: float) -> float:
        recs = work()
        served.append(len(recs.rows))  # type: ignore[attr-defined]
        return next(speeds)

    monkeypatch.setattr(model_bench, "rate", fake_rate)
    opts = model_bench.ModelOptions(model=a, against=b, batches=(4, 8), rounds=3)
    rows = model_bench.side_by_side(opts)
    assert rows == [[4, "200", "50", "0.25x", "0.03-1.00"],
                    [8, "200", "50", "0.25x", "0.03-1.00"]]
    assert served == [4] * 6 + [8] * 6  # each call served a whole batch
