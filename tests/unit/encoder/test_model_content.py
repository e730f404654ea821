"""SASRec with a content tower: item rows are ID + content, ID dropout only while training,
and without a tower the model is exactly the plain one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrec.common.errors import ConfigError
from streamrec.encoder.compiled import trace_encoder
from streamrec.encoder.config import ContentConfig, ModelConfig, TrainConfig, preset
from streamrec.encoder.content import feature_vocabulary, featurize
from streamrec.encoder.features import ItemFeatures
from streamrec.encoder.model import SASRec

CONFIG = ModelConfig(num_items=40, max_len=6, hidden=8, blocks=1, heads=2)
CONTENT = ContentConfig(buckets=128, max_categories=2, max_words=4, vector_dim=3,
                        id_dropout=0.5)


def item_features(row: int) -> ItemFeatures | None:
    """Rows 1..40: even rows have features (a category per 4 rows, some a vector)."""
    if row % 2:
        return None
    vector = np.array([row, 1.0, -1.0], np.float32) if row % 4 == 0 else None
    return ItemFeatures((f"cat{row // 4}",), f"item number {row}", vector)


def with_tower(seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    model = SASRec(CONFIG, CONTENT)
    model.set_item_content(featurize([item_features(r) for r in range(1, 41)], CONTENT))
    return model.eval()


def test_a_model_without_a_tower_is_todays_model() -> None:
    torch.manual_seed(0)
    plain = SASRec(CONFIG)
    assert list(plain.state_dict()) == [
        "item_emb.weight", "pos_emb.weight",
        "blocks.0.ln_1.weight", "blocks.0.ln_1.bias", "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
        "blocks.0.ln_2.weight", "blocks.0.ln_2.bias", "blocks.0.ffn.fc.weight",
        "blocks.0.ffn.fc.bias", "blocks.0.ffn.proj.weight", "blocks.0.ffn.proj.bias",
        "ln_f.weight", "ln_f.bias"]
    assert plain.item_embeddings() is plain.item_emb.weight  # scores as before, to the bit
    plain.train()
    assert plain.id_dropout_mask() is None
    # A tower is built after the ID model, which draws the same numbers with or without it.
    tower = with_tower(seed=0)
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tower.state_dict()[name], tensor), name
    extra = sorted(set(tower.state_dict()) - set(plain.state_dict()))
    assert extra == ["content.buckets.weight", "content.known", "content.unknown",
                     "content.vector.bias", "content.vector.weight", "content_has_vector",
                     "content_tokens", "content_vector"]


def test_the_presets_have_no_tower_and_are_unchanged() -> None:
    # The content tower leaves the games recipe alone; the recipe itself changes only
    # with a measured ablation (16 epochs and fit_validation: docs/QUALITY.md), and its
    # warm start's rate with measured seeds (twice the rate: docs/QUALITY.md).
    model, train = preset("games", 23_715, 31_013, 287_107)
    assert model == ModelConfig(num_items=23_715, max_len=50, hidden=64, blocks=2, heads=1,
                                ffn_mult=1, dropout=0.3, emb_dropout=0.3)
    assert train == TrainConfig(loss="sampled", num_negatives=2048, batch_size=64, lr=1e-3,
                                epochs=16, lr_schedule="linear", ema_decay=0.999,
                                weight_decay=0.1, item_init="cooccurrence", eval_users=8000,
                                max_minutes=14.5, patience=5, threads=1, fit_validation=True,
                                warm_start_lr_scale=2.0)
    assert "content" not in model.to_dict()


def test_item_rows_are_id_plus_content_and_scores_use_them() -> None:
    model = with_tower()
    inputs = model.stored_content()
    with torch.inference_mode():
        table = model.item_embeddings()
        ids = model.item_emb.weight
        content = model.content(inputs) if model.content is not None else None
    assert content is not None
    assert torch.equal(table[0], torch.zeros(8))
    odd = torch.arange(1, 41, 2)  # no features: the ID row alone
    assert torch.equal(table[odd], ids[odd])
    even = torch.arange(2, 41, 2)
    assert torch.allclose(table[even], ids[even] + content[even], atol=1e-7)
    assert not torch.allclose(table[even], ids[even], atol=1e-4)
    rows = torch.tensor([[0, 3, 4], [8, 8, 1]])
    with torch.inference_mode():
        assert torch.allclose(model.item_embeddings(rows), table[rows], atol=1e-7)
        # Histories read the same rows the scores use: a FAISS search over the table is
        # the model's top-k.
        items = torch.tensor([[0, 2, 4, 5], [1, 8, 12, 16]])
        query, _ = model.encode(items)
        hidden = model(items)
        assert torch.allclose(query, hidden[:, -1], atol=1e-5)
        assert torch.allclose(model.scores(hidden[:, -1]), query @ table.T, atol=1e-5)
        # The rows the history reads are ID + content too, not the ID rows alone.
        plain_rows = model.item_emb(items)
        assert not torch.allclose(model.item_embeddings(items), plain_rows, atol=1e-4)


def test_id_dropout_only_while_training_and_only_on_featured_rows() -> None:
    model = with_tower()
    assert model.id_dropout_mask() is None  # eval mode
    with torch.inference_mode():
        assert torch.equal(model.item_embeddings(), model.item_embeddings())
    model.train()
    torch.manual_seed(1)
    masks = torch.stack([m for m in (model.id_dropout_mask() for _ in range(400))
                         if m is not None])
    assert masks.shape == (400, 41)
    dropped = (masks == 0).float().mean(dim=0)  # per row, over 400 steps
    assert torch.all(dropped[1::2] == 0)  # odd rows (and row 0) have no features
    assert torch.all((dropped[2::2] > 0.4) & (dropped[2::2] < 0.6))  # id_dropout = 0.5
    mask = masks[0]
    with torch.no_grad():
        table = model.item_embeddings(id_mask=mask)
        content = model.content(model.stored_content()) if model.content is not None else None
    assert content is not None
    gone = torch.nonzero(mask == 0).ravel()
    kept = torch.nonzero(mask == 1).ravel()
    assert torch.allclose(table[gone], content[gone], atol=1e-7)  # content alone
    assert torch.allclose(table[kept], model.item_emb.weight[kept] + content[kept], atol=1e-7)


def test_content_vectors_place_an_unseen_item_by_its_features() -> None:
    model = with_tower()
    unseen = featurize([item_features(8), None, ItemFeatures(("cat2",))], CONTENT)
    vectors = model.content_vectors(unseen)
    with torch.inference_mode():
        table, ids = model.item_embeddings(), model.item_emb.weight
    assert vectors.shape == (3, 8)
    assert torch.allclose(vectors[0], table[8] - ids[8], atol=1e-6)  # row 8's features
    assert torch.equal(vectors[1], torch.zeros(8))
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="no content tower"):
        SASRec(CONFIG).content_vectors(unseen)


def test_item_content_of_another_shape_is_refused() -> None:
    model = with_tower()
    with pytest.raises(ConfigError, match="expected"):
        model.set_item_content(featurize([None] * 39, CONTENT))
    with pytest.raises(ConfigError, match="no content tower"):
        SASRec(CONFIG).set_item_content(featurize([None] * 40, CONTENT))


def test_the_traced_encoder_reads_the_tower_too() -> None:
    model = with_tower()
    encode, traced = trace_encoder(model, torch.device("cpu"))
    assert traced
    items = torch.tensor([[0, 0, 4, 7, 8], [2, 3, 4, 5, 6]])
    with torch.inference_mode():
        want, got = model.encode(items), encode(items)
    assert torch.allclose(want[0], got[0], atol=1e-5)


def test_id_dropout_spares_items_whose_features_the_vocabulary_does_not_know() -> None:
    content = ContentConfig(buckets=4096, max_categories=2, max_words=4, min_items=2,
                            unknown_rows=False, id_dropout=0.5)
    torch.manual_seed(0)
    model = SASRec(CONFIG, content)
    # Rows 1..20 share "common"; rows 21..40 have only words of their own.
    features = [ItemFeatures(("common",) if r <= 20 else (), f"own{r}") for r in range(1, 41)]
    model.set_item_content(featurize(features, content))
    assert model.content is not None
    model.content.set_vocabulary(feature_vocabulary(features, content))
    model.train()
    masks = torch.stack([m for m in (model.id_dropout_mask() for _ in range(200))
                         if m is not None])
    dropped = (masks == 0).float().mean(dim=0)
    assert torch.all(dropped[21:] == 0)  # no content the tower reads: always by ID
    assert torch.all(dropped[1:21] > 0.3)
