"""Baselines: most-popular and item transitions, scored by hand and through the evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.common.errors import ConfigError
from streamrec.encoder.baselines import (
    ItemTransition,
    MostPopular,
    TransitionConfig,
    fit_baselines,
)
from streamrec.encoder.evaluate import evaluate
from streamrec.encoder.split import EvalCases

SEQS = [np.array([1, 2, 3]), np.array([1, 2, 4]), np.array([2, 3])]
NO_BACKOFF = TransitionConfig(popularity_weight=0.0)


def test_most_popular_scores_are_counts_and_history_is_excluded() -> None:
    pop = MostPopular.fit(SEQS, num_items=5)
    np.testing.assert_array_equal(pop.score(np.zeros((2, 3), np.int64))[0], [0, 2, 3, 2, 1, 0])
    cases = EvalCases(
        users=np.array([0]), histories=[np.array([2])], targets=np.array([3]),
        seen=[np.array([2, 3])],
    )
    # item 2 (most popular) is in the history; item 1 ties with the target (ties count against)
    assert evaluate(pop, cases, protocol="full").ranks.tolist() == [1]


def test_transition_row_is_next_item_probability() -> None:
    model = ItemTransition.fit(SEQS, num_items=5, config=NO_BACKOFF)
    scores = model.score(np.array([[0, 2], [0, 3], [0, 0]]))
    np.testing.assert_allclose(scores[0], [0, 0, 0, 2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(scores[1], 0)  # nothing ever followed item 3
    np.testing.assert_allclose(scores[2], 0)  # empty history


def test_transitions_never_cross_users() -> None:
    model = ItemTransition.fit([np.array([1, 2]), np.array([3, 4])], 4, NO_BACKOFF)
    assert model.score(np.array([[2]]))[0, 3] == 0.0


def test_decayed_look_back_and_window() -> None:
    steps = ItemTransition.fit(SEQS, 5, TransitionConfig(steps=2, decay=0.5, popularity_weight=0))
    # last item 2 votes with weight 1, item 1 before it with weight 0.5 (1 -> 2 always)
    np.testing.assert_allclose(steps.score(np.array([[1, 2]]))[0], [0, 0, 0.5, 2 / 3, 1 / 3, 0])
    window = ItemTransition.fit(
        [np.array([1, 2, 3])], 3, TransitionConfig(window=2, normalize=False, popularity_weight=0)
    )
    np.testing.assert_allclose(window.score(np.array([[1]]))[0], [0, 0, 1.0, 0.5])


def test_popularity_backoff_breaks_ties_only() -> None:
    model = ItemTransition.fit(SEQS, 5)
    scores = model.score(np.array([[3]]))[0]  # no transitions from 3: popularity order
    assert scores[2] > scores[1] > scores[5]
    assert scores.max() < 1e-3


def test_transition_beats_popularity_on_sequential_data() -> None:
    rng = np.random.default_rng(0)
    # each user walks a cycle 1 -> 2 -> ... -> 20 -> 1 from a random start
    seqs = [(rng.integers(0, 20) + np.arange(8)) % 20 + 1 for _ in range(200)]
    cases = EvalCases.from_sequences(seqs)
    train = [s[:-1] for s in seqs]
    scorers = fit_baselines(train, num_items=20)
    assert list(scorers) == ["most-popular", "transition", "co-occurrence"]
    pop = evaluate(scorers["most-popular"], cases, protocol="full", ks=(1,))
    chain = evaluate(scorers["transition"], cases, protocol="full", ks=(1,))
    assert chain.hr[1] == 1.0
    assert pop.hr[1] < 0.5


def test_bad_transition_config() -> None:
    with pytest.raises(ConfigError):
        TransitionConfig(decay=0.0)
