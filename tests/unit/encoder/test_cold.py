"""The cold-item split: exactly the chosen items held out, never trained on, both case sets
in catalogue rows; a model scorer over the catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.common.errors import ConfigError
from streamrec.encoder.cold import ColdModelScorer, cold_item_split, drop_cold
from streamrec.encoder.data import Interactions
from streamrec.encoder.evaluate import evaluate
from streamrec.encoder.split import EvalCases


def planted(users: int = 60, categories: int = 4, per_category: int = 40, length: int = 20,
            seed: int = 0) -> Interactions:
    """Items `k-i` in K categories; each user interacts only within one category."""
    rng = np.random.default_rng(seed)
    pairs = []
    for u in range(users):
        k = u % categories
        for i in rng.choice(per_category, size=length, replace=False).tolist():
            pairs.append((f"u{u}", f"{k}-{i}"))
    return Interactions.from_pairs([p[0] for p in pairs], [p[1] for p in pairs])


def test_exactly_the_chosen_items_are_held_out_and_never_trained_on() -> None:
    data = planted()
    split = cold_item_split(data, 0.15, seed=3)
    assert data.num_items == 160
    assert (split.num_warm, split.num_cold, split.num_items) == (136, 24, 160)
    cold_ids = set(split.catalogue[split.num_warm :])
    assert len(cold_ids) == 24
    assert sorted(split.catalogue) == sorted(data.vocab.ids)  # every item, once
    assert split.train.vocab.ids == split.catalogue[: split.num_warm]
    assert all((s >= 1).all() and (s <= split.num_warm).all() for s in split.train.sequences)
    trained_ids = {split.train.vocab.ids[r - 1] for s in split.train.sequences for r in s}
    assert not trained_ids & cold_ids
    held = sum(int(np.isin(data.vocab.external(s), list(cold_ids)).sum())
               for s in data.sequences)
    assert split.train.num_interactions == data.num_interactions - held
    assert split.train_counts()[split.num_warm + 1 :].sum() == 0
    assert split.cold_mask().sum() == 24
    assert not split.cold_mask()[: split.num_warm + 1].any()
    # deterministic by seed
    assert cold_item_split(data, 0.15, seed=3).catalogue == split.catalogue
    assert set(cold_item_split(data, 0.15, seed=4).catalogue[136:]) != cold_ids


def test_cold_cases_are_the_prefix_before_a_cold_target() -> None:
    data = planted()
    split = cold_item_split(data, 0.15, seed=3, targets_per_user=0)
    v = split.num_warm
    assert (split.cold_cases.targets > v).all()
    catalogue = {item: row for row, item in enumerate(split.catalogue, start=1)}
    expected = 0
    for user, seq in zip(data.users, data.sequences, strict=True):
        rows = np.array([catalogue[i] for i in data.vocab.external(seq)])
        warm_seen = np.cumsum(rows <= v)
        expected += int(((rows > v) & (warm_seen > 0)).sum())
        mine = [i for i, u in enumerate(split.cold_cases.users.tolist()) if data.users[u] == user]
        for i in mine:
            history, target = split.cold_cases.histories[i], split.cold_cases.targets[i]
            np.testing.assert_array_equal(history, rows[: len(history)])
            assert rows[len(history)] == target
    assert len(split.cold_cases) == expected
    last_only = cold_item_split(data, 0.15, seed=3, targets_per_user=1)
    assert len(last_only.cold_cases) == len(set(split.cold_cases.users.tolist()))
    assert len(np.unique(last_only.cold_cases.users)) == len(last_only.cold_cases)


def test_warm_cases_are_the_training_leave_one_out_in_catalogue_rows() -> None:
    data = planted()
    split = cold_item_split(data, 0.15, seed=3)
    test = split.train_split.test
    np.testing.assert_array_equal(split.warm_cases.targets, test.targets)
    assert (split.warm_cases.targets <= split.num_warm).all()
    for full, warm in zip(split.warm_cases.histories, test.histories, strict=True):
        np.testing.assert_array_equal(full[full <= split.num_warm], warm)
    assert any((h > split.num_warm).any() for h in split.warm_cases.histories)


def test_a_user_whose_first_item_is_cold_gives_no_case() -> None:
    users = ["a"] * 4 + ["b"] * 4
    items = ["x", "p", "q", "r", "p", "q", "x", "r"]
    data = Interactions.from_pairs(users, items)
    split = cold_item_split(data, 0.25, seed=0)  # one of 4 items
    cold = split.catalogue[-1]
    first_items = {"a": "x", "b": "p"}
    skipped = sum(1 for item in first_items.values() if item == cold)
    assert split.cold_users_skipped == skipped
    assert len(split.cold_cases) == 2 - skipped


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="fraction"):
        cold_item_split(planted(), 1.0)
    with pytest.raises(ConfigError, match="targets_per_user"):
        cold_item_split(planted(), 0.1, targets_per_user=-1)


def test_drop_cold_removes_cold_rows_and_keeps_order() -> None:
    histories = np.array([[0, 1, 9, 2, 8], [0, 0, 0, 9, 3], [0, 0, 0, 0, 9]])
    # the shared left padding is trimmed too
    np.testing.assert_array_equal(drop_cold(histories, num_warm=5), [[1, 2], [0, 3], [0, 0]])
    np.testing.assert_array_equal(drop_cold(np.array([[0, 9]]), 5), [[0]])


def test_model_scorer_ranks_cold_items_only_with_their_vectors() -> None:
    table = np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32)  # V = 2
    cold = np.array([[2, 0], [0, 0.5]], dtype=np.float32)  # rows 3, 4
    seen = []

    def queries(h: np.ndarray) -> np.ndarray:
        seen.append(h.copy())
        return np.tile(np.array([[1.0, 0.0]], np.float32), (len(h), 1))

    with_content = ColdModelScorer(queries, table, cold, num_cold=2)
    np.testing.assert_allclose(with_content.score(np.array([[3, 2]]))[0, 1:], [1, 0, 2, 0])
    np.testing.assert_array_equal(seen[-1], [[2]])  # the cold row never reaches the model
    without = ColdModelScorer(queries, table, None, num_cold=2)
    scores = without.score(np.array([[0, 2]]))
    assert scores.shape == (1, 5)
    assert np.isneginf(scores[0, 3:]).all()
    cases = EvalCases(users=np.array([0]), histories=[np.array([2])], targets=np.array([3]),
                      seen=[np.array([2, 3])])
    assert evaluate(with_content, cases, num_items=4).ranks.tolist() == [0]
    assert evaluate(without, cases, num_items=4).ranks.tolist() == [4]
    with pytest.raises(ConfigError, match="cold table"):
        ColdModelScorer(queries, table, cold[:1], num_cold=2)


class _Fixed:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, histories: np.ndarray) -> np.ndarray:
        return self.scores[: len(histories)].copy()


def test_fresh_slots_lift_the_best_cold_items_into_the_top_k_in_their_place() -> None:
    from streamrec.encoder.cold import FreshSlots

    # rows 1..6 warm, 7..9 cold; user 0 has seen row 1, user 1 has seen cold row 7
    scores = np.array([[0, 9, 8, 7, 6, 5, 4, 1, 3, 2],
                       [0, 9, 8, 7, 6, 5, 4, 8.5, 3, 2]], np.float32)
    cold = np.zeros(10, bool)
    cold[7:] = True
    histories = np.array([[0, 1], [0, 7]])
    out = FreshSlots(_Fixed(scores), cold, k=3, slots=2).score(histories)
    ranked = [[r for r in np.argsort(-row, kind="stable") if r not in h and r][:3]
              for row, h in zip(out, histories.tolist(), strict=True)]
    # user 0: the top 3 others are 2, 3, 4; the two best cold (8, 9) take the last two
    # places in their own order; user 1's best cold (7) is in its history: 8 and 9 again.
    assert ranked == [[2, 8, 9], [1, 8, 9]]
    unchanged = FreshSlots(_Fixed(scores), cold, k=3, slots=0).score(histories)
    np.testing.assert_array_equal(unchanged, scores)


def test_calibrated_mixes_a_softmax_per_kind_by_the_prior_share_of_cold_items() -> None:
    from streamrec.encoder.cold import Calibrated

    # rows 1..4 trained, 5..6 cold; the user has seen row 1 (score 50: left out of the
    # trained items' softmax, or the others' probabilities would all but vanish)
    scores = np.array([[0, 50, 2, 1, 0, 3, 1]], np.float64)
    out = Calibrated(_Fixed(scores), num_warm=4, prior=0.2, temperature=0.5).score(
        np.array([[0, 1]]))
    warm = np.exp([2, 1, 0]) / np.exp([2, 1, 0]).sum()
    cold = np.exp([6, 2]) / np.exp([6, 2]).sum()  # scores / 0.5
    np.testing.assert_allclose(np.exp(out[0, 2:5]), 0.8 * warm, rtol=1e-6)
    np.testing.assert_allclose(np.exp(out[0, 5:]), 0.2 * cold, rtol=1e-6)
    assert np.isneginf(out[0, :2]).all()
    # the cold item with a raw score above every trained one ranks below the best of
    # them at a small prior, above it at a large one
    assert out[0, 5] < out[0, 2]
    high = Calibrated(_Fixed(scores), num_warm=4, prior=0.6, temperature=0.5)
    assert high.score(np.array([[0, 1]]))[0, 5] > high.score(np.array([[0, 1]]))[0, 2]


def test_calibrated_leaves_unscorable_cold_items_at_minus_infinity() -> None:
    from streamrec.encoder.cold import Calibrated

    scores = np.array([[0, 2, 1, -np.inf, -np.inf]])  # a model without a tower
    with np.errstate(all="raise"):
        out = Calibrated(_Fixed(scores), num_warm=2, prior=0.1).score(np.array([[0, 0]]))
    assert np.isneginf(out[0, 3:]).all()
    np.testing.assert_allclose(np.exp(out[0, 1:3]).sum(), 0.9, rtol=1e-6)
    with pytest.raises(ConfigError, match="prior"):
        Calibrated(_Fixed(scores), num_warm=2, prior=1.0)
    with pytest.raises(ConfigError, match="temperature"):
        Calibrated(_Fixed(scores), num_warm=2, prior=0.1, temperature=0.0)
