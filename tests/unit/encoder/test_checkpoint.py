"""Checkpoints round-trip exactly and refuse anything tampered with or foreign."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from streamrec.encoder import checkpoint as checkpoint_module
from streamrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.errors import CheckpointError
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab

HISTORIES = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8], [0, 0, 0, 0, 9]])


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, SASRec]:
    torch.manual_seed(1)
    model = SASRec(ModelConfig(num_items=12, max_len=6, hidden=8, heads=2)).eval()
    vocab = ItemVocab([f"item-{i}" for i in range(12)])
    popularity = np.arange(13, dtype=np.float32)
    popularity[0] = 0
    path = save_checkpoint(tmp_path / "ckpt", model, vocab, popularity,
                           meta={"metrics": {"ndcg@10": 0.5}})
    return path, model


def test_round_trip_gives_identical_queries(saved: tuple[Path, SASRec]) -> None:
    path, model = saved
    ckpt = load_checkpoint(path)
    assert not ckpt.model.training
    assert ckpt.config == model.config
    assert ckpt.vocab.row("item-0") == 1
    assert ckpt.popularity.shape == (13,)
    assert ckpt.popularity.dtype == np.float32
    assert ckpt.model_version.startswith("sasrec-")
    assert ckpt.meta["metrics"]["ndcg@10"] == 0.5
    q1, a1 = model.encode(HISTORIES)
    q2, a2 = ckpt.model.encode(HISTORIES)
    assert torch.equal(q1, q2)
    assert torch.equal(a1, a2)
    assert torch.equal(model.item_embeddings(), ckpt.model.item_embeddings())


def test_a_large_table_is_copied_in_pieces_into_memory_of_the_models_own(
    saved: tuple[Path, SASRec], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file must not be the weights: a served checkpoint overwritten in place (or
    cut short) would change them under the worker, or crash it."""
    path, model = saved
    monkeypatch.setattr(checkpoint_module, "COPY_PIECE", 64)  # two rows of 8 floats a piece
    ckpt = load_checkpoint(path)
    assert torch.equal(model.item_embeddings(), ckpt.model.item_embeddings())
    weights = path / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as fh:  # every byte after the 8-byte length, in place
        fh.seek(8)
        fh.write(b"\0" * (size - 8))
    assert torch.equal(model.item_embeddings(), ckpt.model.item_embeddings())


def test_tampered_weights_are_refused(saved: tuple[Path, SASRec]) -> None:
    path, _ = saved
    state = load_file(str(path / "model.safetensors"))
    state["item_emb.weight"][3] += 1.0
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*sha256"):
        load_checkpoint(path)


def test_tampered_vocabulary_is_refused(saved: tuple[Path, SASRec]) -> None:
    path, _ = saved
    doc = json.loads((path / "items.json").read_text())
    doc["items"][0], doc["items"][1] = doc["items"][1], doc["items"][0]
    (path / "items.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"items\.json"):
        load_checkpoint(path)


def test_unknown_format_version_is_refused(saved: tuple[Path, SASRec]) -> None:
    path, _ = saved
    doc = json.loads((path / "config.json").read_text())
    doc["format_version"] = 99
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_shape_mismatch_is_refused(saved: tuple[Path, SASRec]) -> None:
    path, _ = saved
    doc = json.loads((path / "config.json").read_text())
    doc["model"]["hidden"] = 16  # weights are still d = 8; hashes unchanged
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="shapes do not match"):
        load_checkpoint(path)


def test_missing_files_are_refused(saved: tuple[Path, SASRec], tmp_path: Path) -> None:
    path, _ = saved
    (path / "popularity.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"popularity\.safetensors is missing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a streamrec checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_pickle_is_never_read(saved: tuple[Path, SASRec]) -> None:
    path, model = saved
    # A pickled state dict renamed as safetensors must be rejected, not unpickled.
    torch.save(model.state_dict(), path / "model.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_vocabulary_must_match_the_model(tmp_path: Path) -> None:
    model = SASRec(ModelConfig(num_items=5, max_len=4, hidden=8))
    with pytest.raises(CheckpointError, match="vocabulary has 3 items"):
        save_checkpoint(tmp_path, model, ItemVocab(["a", "b", "c"]), np.zeros(6, np.float32))


def test_queries_and_attached_files_round_trip_and_are_checked(tmp_path: Path) -> None:
    from streamrec.encoder.checkpoint import attach_files

    model = SASRec(ModelConfig(num_items=12, max_len=6, hidden=8, heads=2)).eval()
    vocab = ItemVocab([f"item-{i}" for i in range(12)])
    queries = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    path = save_checkpoint(tmp_path / "ckpt", model, vocab, np.ones(13, np.float32),
                           queries=queries)
    assert np.array_equal(load_checkpoint(path).queries, queries)
    attach_files(path, {"index.json": b"{}", "index.faiss": b"bytes"})
    listed = json.loads((path / "config.json").read_text())["sha256"]
    assert {"index.json", "index.faiss", "queries.safetensors"} <= set(listed)
    load_checkpoint(path)  # still loads
    (path / "index.faiss").write_bytes(b"other")
    with pytest.raises(CheckpointError, match=r"index\.faiss does not match the sha256"):
        load_checkpoint(path)
    (path / "index.faiss").unlink()
    with pytest.raises(CheckpointError, match=r"index\.faiss is missing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot attach"):
        attach_files(path, {"config.json": b"{}"})


def test_a_checkpoint_without_queries_loads_without_them(saved: tuple[Path, SASRec]) -> None:
    assert load_checkpoint(saved[0]).queries is None


def test_listed_names_must_be_plain_file_names(saved: tuple[Path, SASRec]) -> None:
    path, _ = saved
    doc = json.loads((path / "config.json").read_text())
    doc["sha256"]["../config.json"] = "0" * 64
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="not a file name"):
        load_checkpoint(path)
