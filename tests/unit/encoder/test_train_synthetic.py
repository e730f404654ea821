"""Training learns a learnable rule in seconds, resumes, and writes a loadable checkpoint."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from streamrec.encoder.baselines import MostPopular
from streamrec.encoder.checkpoint import load_checkpoint
from streamrec.encoder.config import ModelConfig, TrainConfig, preset
from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import TrainingError
from streamrec.encoder.evaluate import ModelScorer, evaluate
from streamrec.encoder.schedule import lr_multiplier, time_left
from streamrec.encoder.split import leave_one_out
from streamrec.encoder.synthetic import generate
from streamrec.encoder.train import train_model


@pytest.fixture(scope="module")
def walks() -> Interactions:
    """Users walking 6 clusters of 12 items in order, with a little noise."""
    pairs = generate(400, items_per_cluster=12, clusters=6, seed=3, min_len=6, max_len=12,
                     skip=0.05, jump=0.0, switch=0.05)
    return Interactions.from_pairs([u for u, _ in pairs], [i for _, i in pairs])


def small(data: Interactions, **train: object) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig(num_items=data.num_items, max_len=12, hidden=32, blocks=1, heads=1,
                        ffn_mult=2, dropout=0.1, emb_dropout=0.1)
    options = {"epochs": 12, "batch_size": 32, "lr": 5e-3, "warmup_steps": 10,
               "patience": 3, "threads": 1, "max_minutes": 1.0} | train
    return model, TrainConfig(**options)  # type: ignore[arg-type]


def test_learns_the_walk_far_better_than_popularity(walks: Interactions, tmp_path: Path) -> None:
    result = train_model(walks, *small(walks), checkpoint_dir=tmp_path, progress=False)
    split = leave_one_out(walks)
    model = evaluate(ModelScorer(result.model), split.test, protocol="full", ks=(10,))
    popular = evaluate(MostPopular.fit(split.train, walks.num_items), split.test,
                       protocol="full", ks=(10,))
    assert model.hr[10] >= 0.9
    assert popular.hr[10] < 0.4
    assert result.best_val_ndcg10 == max(row["val_ndcg10"] for row in result.history)
    # The checkpoint holds the best weights and serves the same queries.
    ckpt = load_checkpoint(tmp_path)
    histories = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8]])
    assert torch.equal(ckpt.model.encode(histories)[0], result.model.encode(histories)[0])
    assert ckpt.meta["metrics"]["best_epoch"] == result.best_epoch
    assert ckpt.popularity.sum() == walks.num_interactions


def test_same_seed_same_run(walks: Interactions) -> None:
    configs = small(walks, epochs=2, patience=0)
    a = train_model(walks, *configs, progress=False)
    b = train_model(walks, *configs, progress=False)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9}])
def test_resume_continues_where_it_stopped(
    walks: Interactions, tmp_path: Path, extra: dict[str, object]
) -> None:
    model_config, train_config = small(walks, epochs=3, patience=0, **extra)
    straight = train_model(walks, model_config, train_config, progress=False)
    first = dataclasses.replace(train_config, epochs=2)
    train_model(walks, model_config, first, checkpoint_dir=tmp_path, progress=False)
    resumed = train_model(walks, model_config, train_config, checkpoint_dir=tmp_path,
                          resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[2]["loss"] == pytest.approx(straight.history[2]["loss"], rel=1e-5)
    assert resumed.history[2]["val_ndcg10"] == pytest.approx(straight.history[2]["val_ndcg10"])


def test_averaged_weights_are_the_ones_kept(walks: Interactions) -> None:
    model_config, train_config = small(walks, epochs=4, patience=0, ema_decay=0.95)
    result = train_model(walks, model_config, train_config, progress=False)
    split = leave_one_out(walks)
    model = evaluate(ModelScorer(result.model), split.validation, protocol="full", ks=(10,))
    assert model.ndcg[10] == pytest.approx(result.best_val_ndcg10, rel=1e-4)
    assert result.best_val_ndcg10 > 0.5


@pytest.mark.parametrize(("schedule", "halfway"), [("constant", 1.0), ("linear", 0.5),
                                                   ("cosine", 0.5)])
def test_learning_rate_warms_up_then_follows_the_schedule(schedule: str, halfway: float) -> None:
    tc = TrainConfig(warmup_steps=10, lr_schedule=schedule)  # type: ignore[arg-type]
    assert lr_multiplier(0, 110, tc) == pytest.approx(0.1)
    assert lr_multiplier(9, 110, tc) == pytest.approx(1.0)
    assert lr_multiplier(10, 110, tc) == pytest.approx(1.0)
    assert lr_multiplier(60, 110, tc) == pytest.approx(halfway)
    assert lr_multiplier(110, 110, tc) == pytest.approx(1.0 if schedule == "constant" else 0.0)


def test_resume_without_state_is_refused(walks: Interactions, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="nothing to resume"):
        train_model(walks, *small(walks), checkpoint_dir=tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("extra", [{}, {"bce_weight": 1.0, "bce_negatives": 4}])
def test_sampled_loss_also_learns(walks: Interactions, extra: dict[str, object]) -> None:
    model_config, train_config = small(walks, loss="sampled", num_negatives=32, **extra)
    result = train_model(walks, model_config, train_config, progress=False)
    assert result.best_val_ndcg10 > 0.5


def test_demo_preset_fits_the_synthetic_log(walks: Interactions) -> None:
    model_config, train_config = preset("demo", walks.num_items, walks.num_users,
                                        walks.num_interactions)
    assert model_config.num_items == walks.num_items
    assert train_config.max_minutes <= 1.0


def test_time_left_is_the_steps_at_this_pace_or_the_budget_if_sooner() -> None:
    far = time.perf_counter() + 3600
    assert time_left(100, 0.5, far) == pytest.approx(50.0)
    assert time_left(100, 0.5, time.perf_counter() + 10) == pytest.approx(10.0, abs=0.5)
    assert time_left(100, 0.5, time.perf_counter() - 1) == 0.0  # the budget has run out


def test_fit_validation_learns_the_validation_items_and_keeps_the_last_weights() -> None:
    # Every user of group g walks a_g, b_g, v_g, t_g: v_g is only ever a validation item.
    users, items = [], []
    for u in range(240):
        g = u % 4
        users += [u] * 4
        items += [f"a{g}", f"b{g}", f"v{g}", f"t{g}"]
    data = Interactions.from_pairs(users, items)
    rows = {name: data.vocab.rows([name])[0] for name in data.vocab.ids}
    histories = torch.tensor([[0, 0, rows[f"a{g}"], rows[f"b{g}"]] for g in range(4)])
    targets = [rows[f"v{g}"] for g in range(4)]

    def top_items(result: object) -> list[int]:
        model = result.model  # type: ignore[attr-defined]
        with torch.no_grad():
            scores = model.encode(histories)[0] @ model.item_embeddings().T
        scores[:, 0] = -torch.inf
        scores[torch.arange(4)[:, None], histories] = -torch.inf  # the history, as served
        return scores.argmax(1).tolist()

    fitted = train_model(data, *small(data, epochs=8, patience=0, item_init="random",
                                      fit_validation=True),
                         progress=False)
    assert top_items(fitted) == targets  # learnt b -> v from the validation items
    assert fitted.best_val_ndcg10 is None
    assert fitted.best_epoch == 8
    assert all("val_ndcg10" not in row for row in fitted.history)  # nothing to validate on
    held_out = train_model(data, *small(data, epochs=8, patience=0, item_init="random"),
                           progress=False)
    assert not set(top_items(held_out)) & set(targets)  # v never a training target
