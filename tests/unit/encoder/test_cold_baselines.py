"""Cold-item baselines on data with planted structure: items in K categories, users who stay
in one. Content that knows the category finds the user's cold items; chance does not."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.common.errors import ConfigError
from streamrec.encoder.cold import Restricted, cold_item_split
from streamrec.encoder.cold_baselines import (
    CategoryPopular,
    ContentNeighbours,
    RandomCold,
    TfidfConfig,
    tfidf_content,
)
from streamrec.encoder.evaluate import evaluate
from tests.unit.encoder.test_cold import planted

CATEGORIES = ("jazz", "rock", "folk", "opera")


def features(item_id: str) -> tuple[list[str], str]:
    """Item `k-i`: category k; a title with one word of its category and one shared by all."""
    k = int(item_id.split("-")[0])
    return [CATEGORIES[k]], f"the {CATEGORIES[k]}y record number {item_id.split('-')[1]}"


def test_content_vectors_are_unit_rows_and_share_only_tokens_of_two_items() -> None:
    content = tfidf_content([["a", "b"], ["a"], [], ["c"]],
                           ["red shoe", "red", None, "The"])
    assert content.category_names == ["a", "b", "c"]
    np.testing.assert_array_equal(content.categories.sum(axis=0), [2, 1, 1])
    assert not content.categories[0].any()  # row 0: padding
    # shared tokens: category a, word red; "the" is a stop word, the rest occur once
    assert content.vectors.shape == (5, 2)
    norms = np.linalg.norm(content.vectors, axis=1)
    assert norms[0] == 0
    assert norms[3] == 0  # no features at all
    assert norms[4] == 0  # only tokens nobody shares
    # row 2's tokens (a, red) are all shared: its row keeps unit length
    assert norms[2] == pytest.approx(1.0)
    assert 0 < norms[1] < 1  # b and shoe were dropped after normalising
    assert float(content.vectors[1] @ content.vectors[2]) > 0.5


def test_text_weight_zero_uses_categories_only() -> None:
    content = tfidf_content([["a"], ["a"]], ["x y", "x z"], TfidfConfig(text_weight=0))
    assert content.vectors.shape == (3, 1)
    np.testing.assert_allclose(content.vectors[1:, 0], [1.0, 1.0])


def test_content_on_cold_items_beats_random_on_planted_data() -> None:
    data = planted(users=80)
    split = cold_item_split(data, 0.15, seed=3)
    cats, texts = zip(*(features(i) for i in split.catalogue), strict=True)
    content = tfidf_content(cats, texts)
    options = {"num_items": split.num_items, "ks": (10,)}
    chance = evaluate(RandomCold(split.num_warm, split.num_cold, seed=1), split.cold_cases,
                      **options)
    cold_only = Restricted(ContentNeighbours(content), split.cold_mask())
    knowing = evaluate(cold_only, split.cold_cases, **options)
    # 24 cold items, ~6 per category: the user's category holds the target, so content
    # puts it in the top 10 always; chance about 10 / 24 of the time
    assert knowing.hr[10] == 1.0
    assert knowing.ndcg[10] > 2 * chance.ndcg[10]
    assert chance.hr[10] < 0.7
    # over the whole catalogue the ~30 other in-category items compete with the target
    everything = evaluate(ContentNeighbours(content), split.cold_cases, **options)
    assert everything.ndcg[10] < knowing.ndcg[10]
    # chance and the cold-only scorer never rank a warm item
    assert evaluate(cold_only, split.warm_cases, **options).hr[10] == 0.0


def test_random_cold_scores_only_cold_rows() -> None:
    scores = RandomCold(num_warm=3, num_cold=2, seed=0).score(np.zeros((4, 2), np.int64))
    assert scores.shape == (4, 6)
    assert np.isneginf(scores[:, :4]).all()
    assert ((scores[:, 4:] >= 0) & (scores[:, 4:] < 1)).all()


def test_category_popular_ranks_the_users_categories_first_then_by_popularity() -> None:
    # rows 1-3 category a, rows 4-5 category b, row 6 (cold) a, row 7 (cold) b and c
    content = tfidf_content([["a"], ["a"], ["a"], ["b"], ["b"], ["a"], ["b", "c"]],
                           [None] * 7)
    counts = np.array([0, 5, 1, 3, 10, 20, 0, 0], dtype=np.float32)
    scorer = CategoryPopular(content, counts, TfidfConfig(recent=2))
    scores = scorer.score(np.array([[0, 1, 2]]))[0]  # recent items in category a
    order = np.argsort(-scores[1:]) + 1
    # category a first: 1 (count 5), 3 (3) and cold 6 (a's mean count (5 + 1 + 3) / 3 = 3),
    # 2 (1); then the rest: 5 (20), 4 (10), cold 7 (mean of b's 15 and c's 0: 7.5)
    assert order[:4].tolist() in ([1, 6, 3, 2], [1, 3, 6, 2])  # 6 and 3 tie at 3
    assert order[4:].tolist() == [5, 4, 7]
    assert np.isneginf(scores[0])
    assert len(set(scores[1:].tolist())) == 7  # ties broken, never shared
    # the recent window: only the last item (row 4, category b) counts with recent=1
    last = CategoryPopular(content, counts, TfidfConfig(recent=1)).score(np.array([[1, 4]]))
    assert (np.argsort(-last[0, 1:]) + 1)[:3].tolist() == [5, 4, 7]


def test_category_popular_prefers_the_users_category_on_planted_data() -> None:
    data = planted(users=80)
    split = cold_item_split(data, 0.15, seed=3)
    cats, texts = zip(*(features(i) for i in split.catalogue), strict=True)
    scorer = CategoryPopular(tfidf_content(cats, texts), split.train_counts())
    top = np.argsort(-scorer.score(np.array([[0, 1]])), axis=1)[0, :40]
    category = features(split.catalogue[0])[0]
    assert all(features(split.catalogue[row - 1])[0] == category for row in top)


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError):
        TfidfConfig(recent=0)
    with pytest.raises(ConfigError):
        TfidfConfig(category_weight=0, text_weight=0)
    with pytest.raises(ConfigError, match="texts"):
        tfidf_content([["a"]], [])
    content = tfidf_content([["a"]], ["x"])
    with pytest.raises(ConfigError, match="candidates"):
        Restricted(ContentNeighbours(content), np.ones(5, dtype=bool)).score(np.zeros((1, 1), int))
