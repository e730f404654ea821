"""The encoder's contract: shapes, causality, padding invariance, attention weights."""

from __future__ import annotations

import pytest
import torch

from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec


@pytest.fixture
def model() -> SASRec:
    torch.manual_seed(0)
    config = ModelConfig(num_items=50, max_len=8, hidden=16, blocks=2, heads=2,
                         dropout=0.3, emb_dropout=0.3)
    return SASRec(config).eval()


def test_shapes(model: SASRec) -> None:
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    assert model(items).shape == (2, 6, 16)
    query, attention = model.encode(items)
    assert query.shape == (2, 16)
    assert attention.shape == (2, 6)
    assert model.item_embeddings().shape == (51, 16)
    assert torch.all(model.item_embeddings()[0] == 0)


def test_output_at_t_ignores_later_items(model: SASRec) -> None:
    a = torch.tensor([[0, 1, 2, 3, 4, 5]])
    b = torch.tensor([[0, 1, 2, 3, 9, 17]])
    with torch.no_grad():
        ha, hb = model(a), model(b)
    # Positions are counted from the newest item, so compare prefixes by their own encoding.
    assert torch.allclose(ha[:, :4], hb[:, :4], atol=1e-6)
    assert not torch.allclose(ha[:, 4:], hb[:, 4:], atol=1e-4)


def test_left_padding_does_not_change_the_query(model: SASRec) -> None:
    short = torch.tensor([[7, 8, 9]])
    padded = torch.tensor([[0, 0, 0, 0, 7, 8, 9]])
    q1, a1 = model.encode(short)
    q2, a2 = model.encode(padded)
    assert torch.allclose(q1, q2, atol=1e-6)
    assert torch.allclose(a1, a2[:, -3:], atol=1e-6)
    assert torch.all(a2[:, :4] == 0)


def test_history_longer_than_max_len_reads_the_newest_items(model: SASRec) -> None:
    long = torch.arange(1, 13)[None, :]  # 12 items, max_len 8
    q_long, attention = model.encode(long)
    q_tail, _ = model.encode(long[:, -8:])
    assert torch.allclose(q_long, q_tail, atol=1e-6)
    assert attention.shape == (1, 12)
    assert torch.all(attention[:, :4] == 0)


def test_attention_sums_to_one_over_history(model: SASRec) -> None:
    items = torch.tensor([[0, 0, 0, 4, 5, 6], [0, 0, 0, 0, 0, 6], [1, 2, 3, 4, 5, 6]])
    _, attention = model.encode(items)
    assert torch.allclose(attention.sum(dim=1), torch.ones(3), atol=1e-5)
    assert torch.all(attention[items == 0] == 0)
    assert attention[1, -1] == pytest.approx(1.0)


def test_encode_matches_forward_and_scores_are_inner_products(model: SASRec) -> None:
    items = torch.tensor([[0, 2, 4, 6], [1, 3, 5, 7]])
    query, _ = model.encode(items)
    with torch.inference_mode():  # encode returns inference tensors
        hidden = model(items)
        scores = model.scores(hidden[:, -1])
        by_table = query @ model.item_embeddings().T
    assert torch.allclose(query, hidden[:, -1], atol=1e-5)
    assert torch.allclose(scores, by_table, atol=1e-5)


def test_small_init_keeps_first_logits_small(model: SASRec) -> None:
    query, _ = model.encode(torch.tensor([[1, 2, 3]]))
    with torch.inference_mode():
        logits = query @ model.item_embeddings().T
    assert logits.abs().max() < 1.0  # N(0, 1) tables give logits of order sqrt(d) and more


def test_training_mode_is_stochastic_and_eval_is_not(model: SASRec) -> None:
    items = torch.tensor([[1, 2, 3, 4]])
    model.train()
    assert not torch.allclose(model(items), model(items))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(items), model(items))


def test_last_position_shortcut_equals_the_full_last_block(model: SASRec) -> None:
    """`encode` runs only the last position through the last block; the full pass's
    last row and its explicit attention weights must be the same numbers."""
    items = torch.tensor([[0, 0, 0, 4, 5, 6, 7, 9], [0, 0, 0, 0, 0, 0, 0, 6],
                          [1, 2, 3, 4, 5, 6, 7, 8], [0, 3, 0, 4, 0, 5, 1, 1]])
    query, attention = model.encode(items)
    with torch.inference_mode():
        hidden, weights = model._run(items, need_weights=True)
    expected = weights[:, :, -1, :].mean(dim=1) * (items > 0)
    assert torch.allclose(query, hidden[:, -1], atol=1e-5)
    assert torch.allclose(attention, expected, atol=1e-6)
