"""The real games.txt (SASRec's Amazon Video Games), when the shared data folder exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.encoder.baselines import ItemTransition, MostPopular
from streamrec.encoder.data import load_interactions
from streamrec.encoder.evaluate import evaluate
from streamrec.encoder.split import leave_one_out

GAMES = Path(__file__).resolve().parents[3] / "../shared/data/games.txt"

pytestmark = pytest.mark.skipif(not GAMES.is_file(), reason=f"{GAMES} not present")


def test_games_counts_and_split() -> None:
    data = load_interactions(GAMES, "sasrec")
    assert data.report.interactions == 287_107
    assert data.num_users == 31_013
    assert data.num_items == 23_715
    assert data.report.bad_lines == 0
    assert data.vocab.row("1") == 1  # integer ids keep their numbers as rows
    split = leave_one_out(data)
    assert len(split.test) + split.skipped_users == 31_013
    assert split.skipped_users == 112


def test_games_baselines_on_a_user_sample() -> None:
    split = leave_one_out(load_interactions(GAMES, "sasrec"))
    cases = split.test.take(np.arange(0, len(split.test), 10))  # every 10th user: fast
    pop = evaluate(MostPopular(split.train_item_counts()), cases)
    chain = evaluate(ItemTransition.fit(split.train, split.num_items), cases)
    # whole-split figures: 0.0099 and 0.044 (the references: 0.010, 0.045)
    assert 0.005 < pop.ndcg[10] < 0.02
    assert 0.03 < chain.ndcg[10] < 0.06


def test_one_epoch_of_the_games_recipe_already_ranks_well() -> None:
    """Smoke run of the preset (the full run is `benchmarks/quality_games.py`): one epoch
    from the co-occurrence start. From a random start one epoch reaches ~0.012."""
    import dataclasses

    from streamrec.encoder.config import preset
    from streamrec.encoder.evaluate import ModelScorer
    from streamrec.encoder.train import train_model

    data = load_interactions(GAMES, "sasrec")
    model_config, train_config = preset("games", data.num_items, data.num_users,
                                        data.num_interactions)
    # validation held out (the preset trains on it) so that there is a figure to check
    train_config = dataclasses.replace(train_config, epochs=1, eval_users=2000,
                                       fit_validation=False)
    result = train_model(data, model_config, train_config, progress=False)
    assert result.best_val_ndcg10 > 0.045
    split = leave_one_out(data)
    cases = split.test.take(np.arange(0, len(split.test), 10))
    sampled = evaluate(ModelScorer(result.model), cases, protocol="sampled", ks=(10,))
    assert sampled.hr[10] > 0.70
