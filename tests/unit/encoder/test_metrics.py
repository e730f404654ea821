"""Ranking metrics on hand-computed cases: HR, NDCG, MRR, history exclusion, ties, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamrec.common.errors import ConfigError
from streamrec.encoder.errors import EncoderError
from streamrec.encoder.evaluate import (
    ModelScorer,
    evaluate,
    evaluate_protocols,
    metrics_from_ranks,
)
from streamrec.encoder.negatives import sample_negatives
from streamrec.encoder.split import EvalCases


class FixedScorer:
    """Every user gets the same scores (row 0 deliberately the largest: must be ignored)."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)

    def score(self, histories: np.ndarray) -> np.ndarray:
        return np.tile(self.scores, (len(histories), 1))


def _cases(histories: list[list[int]], targets: list[int]) -> EvalCases:
    hs = [np.asarray(h, dtype=np.int64) for h in histories]
    return EvalCases(
        users=np.arange(len(hs), dtype=np.int64), histories=hs,
        targets=np.asarray(targets, dtype=np.int64),
        seen=[np.append(h, t) for h, t in zip(hs, targets, strict=True)],
    )


def test_metrics_from_ranks_by_hand() -> None:
    m = metrics_from_ranks(np.array([0, 1, 9, 10, 25]), ks=(10, 20), protocol="full")
    assert m.users == 5
    assert m.hr[10] == pytest.approx(3 / 5)
    assert m.hr[20] == pytest.approx(4 / 5)
    assert m.ndcg[10] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert m.ndcg[20] == pytest.approx(
        (1 + 1 / math.log2(3) + 1 / math.log2(11) + 1 / math.log2(12)) / 5
    )
    assert m.mrr == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 26) / 5)
    assert m.as_dict()["NDCG@10"] == m.ndcg[10]


def test_full_ranking_excludes_history_but_not_a_repeated_target() -> None:
    #                      pad  1  2  3  4  5
    scorer = FixedScorer([99.0, 5, 4, 3, 2, 1])
    cases = _cases([[1], [3, 1], [2]], targets=[3, 3, 1])
    m = evaluate(scorer, cases, protocol="full", ks=(1, 2))
    # user 0: item 1 excluded, only item 2 scores above 3 -> rank 1
    # user 1: target 3 is also in the history and stays a candidate -> rank 1
    # user 2: target 1 is the best item -> rank 0
    np.testing.assert_array_equal(m.ranks, [1, 1, 0])
    assert m.hr[1] == pytest.approx(1 / 3)
    assert m.ndcg[2] == pytest.approx((1 / math.log2(3) * 2 + 1) / 3)


def test_ties_count_against_the_target() -> None:
    scorer = FixedScorer([0.0] + [1.0] * 30)  # a constant scorer must not look good
    m = evaluate(scorer, _cases([[1, 2]], targets=[3]), protocol="full")
    assert m.ranks.tolist() == [27]  # 30 items - 2 history - the target itself
    assert m.hr[10] == 0.0


def test_nan_target_score_is_ranked_last() -> None:
    scores = [0.0] * 31
    scores[2] = float("nan")
    m = evaluate(FixedScorer(scores), _cases([[1]], targets=[2]), protocol="full")
    assert m.ranks.tolist() == [30]  # behind every item, even the excluded ones
    assert m.hr[10] == 0.0


def test_batching_does_not_change_results() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=41).astype(np.float32)
    hist = [rng.integers(1, 41, size=rng.integers(1, 6)).tolist() for _ in range(23)]
    cases = _cases(hist, rng.integers(1, 41, size=23).tolist())
    one = evaluate_protocols(FixedScorer(table), cases, batch_size=100)
    many = evaluate_protocols(FixedScorer(table), cases, batch_size=4)
    for protocol in ("full", "sampled"):
        np.testing.assert_array_equal(one[protocol].ranks, many[protocol].ranks)


def test_sampled_negatives_are_unseen_distinct_and_deterministic() -> None:
    seen = [np.array([1, 2, 3]), np.array([5]), np.arange(1, 46)]
    ids = np.array([0, 7, 3])
    a = sample_negatives(seen, ids, num_items=50, num_negatives=4, seed=1)
    b = sample_negatives(seen[1:2], ids[1:2], num_items=50, num_negatives=4, seed=1)
    np.testing.assert_array_equal(a[1], b[0])  # the same user's draws in another batch
    assert not np.array_equal(a, sample_negatives(seen, ids, 50, 4, seed=2))
    for row, s in zip(a, seen, strict=True):
        assert len(set(row.tolist())) == 4
        assert not set(row.tolist()) & set(s.tolist())
        assert row.min() >= 1
        assert row.max() <= 50
    # a user who has seen all but 2 items gets those 2, and 0 (= no negative) after
    c = sample_negatives([np.arange(1, 49)], np.array([0]), 50, 4, seed=1)
    assert sorted(c[0].tolist()) == [0, 0, 49, 50]


def test_sampled_protocol_ranks_against_negatives_only() -> None:
    # target 1 scores 0.5; unseen items 3..5 score 1, 0, 0 -> rank 1 of 4 when 3 items drawn
    scorer = FixedScorer([0.0, 0.5, 9.0, 1.0, 0.0, 0.0])
    cases = _cases([[2]], targets=[1])
    m = evaluate(scorer, cases, protocol="sampled", num_negatives=3, seed=5)
    assert m.ranks.tolist() == [1]
    again = evaluate(scorer, cases, protocol="sampled", num_negatives=3, seed=5)
    np.testing.assert_array_equal(m.ranks, again.ranks)


def test_bad_scorer_output_and_protocol_are_errors() -> None:
    class Wrong:
        def score(self, histories: np.ndarray) -> np.ndarray:
            return np.zeros(len(histories))

    with pytest.raises(EncoderError, match="shape"):
        evaluate(Wrong(), _cases([[1]], [2]))
    with pytest.raises(EncoderError, match="columns"):
        evaluate(FixedScorer([0, 1, 2]), _cases([[1]], [2]), num_items=5)
    with pytest.raises(ConfigError):
        evaluate(FixedScorer([0, 1, 2]), _cases([[1]], [2]), protocol="bogus")  # type: ignore[arg-type]


class TinyModel(torch.nn.Module):
    """Stand-in encoder: the query is the embedding of the most recent item."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(5, 2)
        with torch.no_grad():
            self.table.weight.copy_(torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [-1, 0]]))
        self.seen_widths: list[int] = []

    def item_embeddings(self) -> torch.Tensor:
        return self.table.weight

    def encode(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen_widths.append(items.shape[1])
        return self.table(items[:, -1]), torch.zeros(items.shape, dtype=torch.float32)


def test_model_scorer_is_query_dot_item_table_and_restores_train_mode() -> None:
    model = TinyModel().train()
    scorer = ModelScorer(model, batch_size=2, max_len=3)
    histories = np.array([[0, 0, 0, 0, 1], [0, 0, 0, 2, 3], [9, 9, 1, 2, 4]])
    scores = scorer.score(histories)
    assert scores.shape == (3, 5)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores[0], [0, 1, 0, 1, -1])
    np.testing.assert_allclose(scores[1], [0, 1, 1, 2, -1])
    assert model.training
    # shared left padding trimmed per chunk; never wider than max_len
    assert model.seen_widths == [2, 3]
