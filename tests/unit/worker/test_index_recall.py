"""The worker measures an approximate index at load, refuses a poor one, and reads a
stored one instead of building it."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from streamrec.cli.index import attach_index
from streamrec.encoder.checkpoint import save_checkpoint
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab
from streamrec.index.errors import IndexRecallError
from streamrec.index.params import TUNED_RECALL, AnnParams
from streamrec.worker.recommend import Recommender

ITEMS = 3000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = SASRec(ModelConfig(num_items=ITEMS, max_len=8, hidden=16, heads=1)).eval()
    rng = np.random.default_rng(0)
    histories = torch.as_tensor(rng.integers(1, ITEMS + 1, (300, 8)))
    with torch.inference_mode():
        queries = model.encode(histories)[0].numpy()
    return save_checkpoint(tmp_path_factory.mktemp("m") / "ckpt", model,
                           ItemVocab([f"i{i}" for i in range(ITEMS)]),
                           rng.integers(1, 50, ITEMS + 1).astype(np.float32), queries=queries)


def test_a_poor_index_is_refused(model_dir: Path) -> None:
    one_list = AnnParams(nlist=60, nprobe=1)
    with pytest.raises(IndexRecallError, match=r"below --min-recall 0\.9"):
        Recommender.load(model_dir, "cpu", backend="ivf", ann=one_list, min_recall=0.9)
    served = Recommender.load(model_dir, "cpu", backend="ivf", ann=one_list, min_recall=0.0)
    assert served.index_recall is not None
    assert served.index_recall < 0.9


def test_an_exhaustive_index_measures_full_recall(model_dir: Path) -> None:
    served = Recommender.load(model_dir, "cpu", backend="ivf",
                              ann=AnnParams(nlist=60, nprobe=60), min_recall=0.99)
    assert served.index_recall == 1.0
    assert Recommender.load(model_dir, "cpu", backend="torch").index_recall is None


def test_an_index_built_in_a_moment_is_measured_but_not_stored(model_dir: Path) -> None:
    """torch-bf16 is approximate (its recall is measured at load) but has nothing to
    store: `train` (auto on a CPU with bfloat16 units) must not try to."""
    files = sorted(p.name for p in model_dir.iterdir())
    assert attach_index(model_dir, "torch-bf16", AnnParams()) is None
    assert sorted(p.name for p in model_dir.iterdir()) == files
    served = Recommender.load(model_dir, "cpu", backend="torch-bf16", min_recall=0.9)
    assert served.index_recall == 1.0


def test_a_stored_index_is_read_not_built(model_dir: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    meta = attach_index(model_dir, "ivf-sq8", AnnParams(nlist=40, nprobe=40))
    assert meta is not None
    assert meta["kind"] == "ivf-sq8"
    assert meta["recall_at_10"] > 0.9
    caplog.set_level(logging.INFO)
    served = Recommender.load(model_dir, "cpu", backend="ivf-sq8",
                              ann=AnnParams(nprobe=40), min_recall=0.9)
    assert "loaded faiss-ivf-sq8 index" in caplog.text
    assert meta["truth"]["queries"] == 300  # every sample query's exact top 10, stored
    assert served.recall is not None
    assert (served.recall.stored, served.recall.queries) == (True, 300)
    assert "on 300 queries (validation histories stored with the checkpoint; exact top 10 " \
           "stored with the index)" in caplog.text
    assert served.index.params.nlist == 40  # type: ignore[attr-defined]
    # Another kind asked for: built, and the reason said.
    Recommender.load(model_dir, "cpu", backend="ivf", ann=AnnParams(nlist=40, nprobe=40))
    assert "building a ivf index: the stored index is 'ivf-sq8'" in caplog.text


def test_without_a_query_sample_popular_items_are_the_queries(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = SASRec(ModelConfig(num_items=ITEMS, max_len=8, hidden=16, heads=1)).eval()
    path = save_checkpoint(tmp_path / "bare", model, ItemVocab([f"i{i}" for i in range(ITEMS)]),
                           np.ones(ITEMS + 1, np.float32))
    caplog.set_level(logging.INFO)
    served = Recommender.load(path, "cpu", backend="ivf", ann=AnnParams(nlist=60, nprobe=60))
    assert served.index_recall == 1.0
    assert "on 1000 queries (one-item histories of the most popular items" in caplog.text


def test_a_poor_stored_index_is_refused_on_its_stored_answer(model_dir: Path,
                                                             tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "copy"))
    meta = attach_index(copy, "ivf", AnnParams(nlist=60, nprobe=1))
    assert meta is not None
    assert meta["recall_at_10"] < 0.9
    with pytest.raises(IndexRecallError, match=r"on 300 queries.*below --min-recall 0\.9"):
        Recommender.load(copy, "cpu", backend="ivf", ann=AnnParams(nprobe=1), min_recall=0.9)
    served = Recommender.load(copy, "cpu", backend="ivf", ann=AnnParams(nprobe=1))
    assert served.recall is not None
    assert served.recall.stored
    assert served.index_recall == pytest.approx(meta["recall_at_10"], abs=1e-4)


def test_an_unasked_nprobe_widens_until_the_index_is_served(model_dir: Path,
                                                            tmp_path: Path) -> None:
    """The same lists that a load with --nprobe 16 refuses are searched wider when no
    --nprobe is asked, so a retrained model whose vectors cluster less still serves;
    `index build` stores that breadth and a load starts from it."""
    many_lists = AnnParams(nlist=300)
    with pytest.raises(IndexRecallError, match=r"below --min-recall 0\.9"):
        Recommender.load(model_dir, "cpu", backend="ivf",
                         ann=dataclasses.replace(many_lists, nprobe=16), min_recall=0.9)
    served = Recommender.load(model_dir, "cpu", backend="ivf", ann=many_lists, min_recall=0.9)
    assert served.index_recall is not None
    assert served.recall is not None
    assert served.index_recall >= TUNED_RECALL
    assert served.recall.widened >= 1
    chosen = served.index.params.nprobe  # type: ignore[attr-defined]
    assert chosen > 16
    copy = Path(shutil.copytree(model_dir, tmp_path / "copy"))
    meta = attach_index(copy, "ivf", many_lists)
    assert meta is not None
    assert (meta["nprobe_tuned"], meta["params"]["nprobe"]) == (True, chosen)
    again = Recommender.load(copy, "cpu", backend="ivf", ann=AnnParams(), min_recall=0.9)
    assert again.recall is not None
    assert (again.recall.stored, again.recall.widened) == (True, 0)
    assert again.index.params.nprobe == chosen  # type: ignore[attr-defined]
