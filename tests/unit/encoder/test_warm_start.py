"""Warm starts: the vocabulary grows, old weights carry over, new items start among their
neighbours, and `streamrec train --warm-start` publishes a version that knows the new items."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.cli.main import build_parser, main
from streamrec.cli.train_evaluate import WARM_START_EPOCHS
from streamrec.common.errors import ConfigError
from streamrec.encoder import repository
from streamrec.encoder.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from streamrec.encoder.config import ModelConfig, TrainConfig
from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import TrainingError
from streamrec.encoder.evaluate import ModelScorer, evaluate
from streamrec.encoder.model import SASRec
from streamrec.encoder.split import leave_one_out
from streamrec.encoder.synthetic import generate
from streamrec.encoder.train import train_model
from streamrec.encoder.vocab import ItemVocab
from streamrec.encoder.warmstart import (
    grow_interactions,
    warm_model_config,
    warm_start,
)


def interactions(rows: list[list[str]]) -> Interactions:
    """One user per list of item ids, in order."""
    users = [f"u{n}" for n, row in enumerate(rows) for _ in row]
    return Interactions.from_pairs(users, [item for row in rows for item in row])


def checkpoint(path: Path, vocab: ItemVocab, table: torch.Tensor | None = None,
               hidden: int = 8) -> Checkpoint:
    """A saved and reloaded untrained model over `vocab`, item rows 1..V set to `table`."""
    torch.manual_seed(0)
    model = SASRec(ModelConfig(num_items=len(vocab), max_len=10, hidden=hidden, blocks=1))
    if table is not None:
        with torch.no_grad():
            model.item_emb.weight[1:] = table
    popularity = np.ones(len(vocab) + 1, dtype=np.float32)
    popularity[0] = 0
    return load_checkpoint(save_checkpoint(path, model, vocab, popularity))


def test_grown_vocabulary_keeps_old_rows_and_appends_new_items() -> None:
    old = ItemVocab(["a", "b", "c"])
    data = interactions([["c", "z", "a"], ["y", "c"]])
    grown = grow_interactions(old, data)
    assert grown.vocab.ids == ["a", "b", "c", "z", "y"]  # b is absent but keeps its row
    assert [grown.vocab.external(s) for s in grown.sequences] == [["c", "z", "a"], ["y", "c"]]
    assert grown.sequences[0].tolist() == [3, 4, 1]
    # The report still describes what was read, not the vocabulary it was mapped onto.
    assert grown.report == data.report
    assert grown.report.items == 4
    assert grown.item_counts().tolist() == [0, 1, 0, 2, 1, 1]
    numeric = grow_interactions(ItemVocab(["5"]), interactions([["12", "5", "9"]]))
    assert numeric.vocab.ids == ["5", "9", "12"]  # new integer ids in numeric order


def test_old_weights_are_copied_exactly(tmp_path: Path) -> None:
    previous = checkpoint(tmp_path / "old", ItemVocab(["a", "b", "c"]))
    data = grow_interactions(previous.vocab, interactions([["a", "b", "new", "c", "a"]]))
    config = warm_model_config(previous.config, data.num_items)
    start = warm_start(previous, data, config)
    assert (start.old_items, start.new_items) == (3, 1)
    assert start.from_version == previous.model_version
    old, new = previous.model.state_dict(), start.model.state_dict()
    assert set(old) == set(new)
    for name, tensor in old.items():
        if name == "item_emb.weight":
            assert new[name].shape == (5, 8)
            assert torch.equal(new[name][:4], tensor)
        else:
            assert torch.equal(new[name], tensor), name


def two_worlds(rng: np.random.Generator) -> torch.Tensor:
    """Rows of items a0..a9 along one direction, b0..b9 along another, with noise."""
    a, b = torch.zeros(8), torch.zeros(8)
    a[0], b[1] = 1.0, 1.0
    noise = torch.from_numpy(rng.normal(0, 0.1, (20, 8))).float()
    return torch.cat([a.expand(10, 8), b.expand(10, 8)]) + noise


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(x, y, dim=0))


def test_a_new_item_starts_among_the_items_it_cooccurs_with(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vocab = ItemVocab([f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)])
    table = two_worlds(rng)
    previous = checkpoint(tmp_path / "old", vocab, table)
    rows = []
    for u in range(60):  # users of world a meet new-a, users of world b meet new-b
        world = "a" if u % 2 else "b"
        history = [f"{world}{n}" for n in rng.choice(10, 6, replace=False)]
        history.insert(2, f"new-{world}")
        rows.append([*history, "a0", "a1"])  # the held-out last two never count
    rows += [["new-a", "only-new", "x", "y"]] * 5  # only-new meets new-a only (x, y held out)
    rows += [["lonely"]]
    data = grow_interactions(vocab, interactions(rows))
    start = warm_start(previous, data, warm_model_config(previous.config, data.num_items))
    emb = start.model.item_emb.weight.detach()
    row = {item: emb[data.vocab.row(item)] for item in ("new-a", "new-b", "only-new", "lonely")}
    mean_a, mean_b = table[:10].mean(0), table[10:].mean(0)
    assert cosine(row["new-a"], mean_a) > 0.9 > 0.3 > cosine(row["new-a"], mean_b)
    assert cosine(row["new-b"], mean_b) > 0.9 > 0.3 > cosine(row["new-b"], mean_a)
    assert cosine(row["only-new"], row["new-a"]) > 0.9  # placed by the second pass
    typical = float(table.norm(dim=1).median())
    assert float(row["new-a"].norm()) == pytest.approx(typical, rel=1e-4)
    assert (start.from_old_neighbours, start.from_new_neighbours, start.random) == (2, 1, 3)
    assert 0 < float(row["lonely"].norm()) < 3 * typical


def test_an_item_seen_only_as_a_validation_item_starts_among_neighbours_when_it_is_fitted(
        tmp_path: Path) -> None:
    """A retrain's typical new item is some user's newest event but one: the validation
    item, which the recipe trains on (`fit_validation`). Its neighbours must count."""
    rng = np.random.default_rng(1)
    vocab = ItemVocab([f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)])
    table = two_worlds(rng)
    previous = checkpoint(tmp_path / "old", vocab, table)
    rows = [[*(f"a{n}" for n in rng.choice(10, 5, replace=False)), "fresh", "b0"]
            for _ in range(20)]
    data = grow_interactions(vocab, interactions(rows))
    config = warm_model_config(previous.config, data.num_items)
    fitted = warm_start(previous, data, config, fit_validation=True)
    assert (fitted.from_old_neighbours, fitted.random) == (1, 0)
    fresh = fitted.model.item_emb.weight.detach()[data.vocab.row("fresh")]
    assert cosine(fresh, table[:10].mean(0)) > 0.9
    unfitted = warm_start(previous, data, config, fit_validation=False)
    assert (unfitted.from_old_neighbours, unfitted.random) == (0, 1)


@pytest.fixture(scope="module")
def walks() -> tuple[Interactions, Interactions]:
    """An old log of 6 clusters of 10 items, and a newer one where each cluster has 12."""
    def log(items: int, seed: int) -> Interactions:
        pairs = generate(300, items_per_cluster=items, clusters=6, seed=seed, min_len=6,
                         max_len=12, skip=0.05, jump=0.0, switch=0.05)
        return Interactions.from_pairs([u for u, _ in pairs], [i for _, i in pairs])
    return log(10, 1), log(12, 2)


def small(num_items: int, epochs: int) -> tuple[ModelConfig, TrainConfig]:
    return (ModelConfig(num_items=num_items, max_len=12, hidden=32, blocks=1, ffn_mult=2,
                        dropout=0.1, emb_dropout=0.1),
            TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, warmup_steps=10, patience=0,
                        threads=1, max_minutes=1.0, loss="full"))


def test_warm_started_training_keeps_what_the_old_model_knew_and_saves_the_grown_vocab(
    walks: tuple[Interactions, Interactions], tmp_path: Path,
) -> None:
    old, new = walks
    train_model(old, *small(old.num_items, 6), checkpoint_dir=tmp_path / "old", progress=False)
    previous = load_checkpoint(tmp_path / "old")
    data = grow_interactions(previous.vocab, new)
    assert data.num_items == old.num_items + 12
    _, train_config = small(data.num_items, 1)
    start = warm_start(previous, data, warm_model_config(previous.config, data.num_items))
    before = start.model.item_emb.weight.detach().clone()
    validation = leave_one_out(data).validation
    untrained = evaluate(ModelScorer(start.model), validation, protocol="full", ks=(10,))
    chance = evaluate(ModelScorer(SASRec(start.model.config).eval()), validation,
                      protocol="full", ks=(10,))
    assert untrained.ndcg[10] > 0.5 > 0.2 > chance.ndcg[10]  # the old model's rule carries over
    warm = train_model(data, start.model.config, train_config, checkpoint_dir=tmp_path / "new",
                       progress=False, initial=start)
    assert warm.best_val_ndcg10 > 0.9
    assert torch.equal(start.model.item_emb.weight, before)  # the start is not trained in place
    saved = load_checkpoint(tmp_path / "new")
    assert saved.vocab == data.vocab
    assert "rock-11" in saved.vocab
    assert saved.meta["warm_start"]["from_model_version"] == previous.model_version
    assert saved.meta["warm_start"]["new_items"] == 12
    other = dataclasses.replace(start.model.config, dropout=0.2)
    with pytest.raises(TrainingError, match="warm_model_config"):
        train_model(data, other, train_config, progress=False, initial=start)


def test_settings_that_contradict_the_old_architecture_are_refused() -> None:
    old = ModelConfig(num_items=5, max_len=10, hidden=8, blocks=1, heads=1)
    for clash in ({"hidden": 16}, {"max_len": 20}, {"blocks": 2}, {"heads": 2}):
        with pytest.raises(ConfigError, match=f"{next(iter(clash))}=.*the model has"):
            warm_model_config(old, 7, clash)
    grown = warm_model_config(old, 7, {"hidden": 8, "dropout": 0.1, "max_len": None})
    assert grown == ModelConfig(num_items=7, max_len=10, hidden=8, blocks=1, heads=1,
                                dropout=0.1, emb_dropout=old.emb_dropout)


def write_log(path: Path, items: int) -> Path:
    lines = (f"u{u} i{(u * 7 + t) % items + 1}\n" for u in range(150) for t in range(6))
    path.write_text("".join(lines))
    return path


def train(*argv: str) -> int:
    args = build_parser().parse_args(["train", "--format", "sasrec", "--preset", "demo",
                                      "--no-progress", "--json", *argv])
    return int(args.handler(args))


def test_cli_warm_start_publishes_a_version_that_knows_the_new_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "models"
    assert train("--data", str(write_log(tmp_path / "old.txt", 60)), "--epochs", "1",
                 "--out", str(repo), "--repo") == 0
    first = load_checkpoint(repo)
    capsys.readouterr()
    new = write_log(tmp_path / "new.txt", 64)
    assert train("--data", str(new), "--out", str(repo), "--warm-start") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["warm_start"]["from_model_version"] == first.model_version
    assert summary["warm_start"]["new_items"] == 4
    assert summary["epochs"] == WARM_START_EPOCHS  # not the demo preset's 30
    current = load_checkpoint(repo)
    assert current.path != first.path
    assert current.vocab.ids[:60] == first.vocab.ids
    assert "i64" in current.vocab
    assert "i64" not in first.vocab
    assert current.meta["warm_start"]["from_model_version"] == first.model_version
    # A named checkpoint works too, and --epochs wins over the warm-start default.
    assert train("--data", str(new), "--out", str(tmp_path / "plain"), "--warm-start",
                 str(first.path), "--epochs", "1") == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 1


def test_cli_warm_start_refuses_what_it_cannot_start_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_log(tmp_path / "log.txt", 60)
    base = ["train", "--data", str(data), "--format", "sasrec", "--preset", "demo",
            "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "plain"), "--warm-start"]) == 2
    assert "is none: give --out REPO --repo" in capsys.readouterr().err
    repo = tmp_path / "models"
    # The first run into a new repository has nothing to start from: it trains from scratch.
    assert main([*base, "--epochs", "1", "--out", str(repo), "--repo", "--warm-start",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warm_start"] is None
    version = repository.current_version(repo)
    capsys.readouterr()
    assert main([*base, "--out", str(repo), "--warm-start", "--hidden", "16"]) == 2
    assert "hidden=16 (the model has 48)" in capsys.readouterr().err
    assert repository.current_version(repo) == version
    assert {p.name for p in repo.iterdir()} == {"CURRENT", version}  # nothing left behind


def test_a_warm_start_trains_at_the_recipes_warm_start_rate_unless_one_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The games recipe warm-starts at twice its rate (warm_start_lr_scale); --lr wins."""
    def games(*argv: str) -> int:
        args = build_parser().parse_args(["train", "--format", "sasrec", "--preset", "games",
                                          "--no-progress", "--json", "--epochs", "1",
                                          "--negatives", "16", *argv])
        return int(args.handler(args))

    old = tmp_path / "old"
    assert games("--data", str(write_log(tmp_path / "old.txt", 100)), "--out", str(old)) == 0
    assert load_checkpoint(old).meta["train_config"]["lr"] == 1e-3
    new = write_log(tmp_path / "new.txt", 104)
    assert games("--data", str(new), "--out", str(tmp_path / "w"), "--warm-start", str(old)) == 0
    assert load_checkpoint(tmp_path / "w").meta["train_config"]["lr"] == 2e-3
    assert games("--data", str(new), "--out", str(tmp_path / "given"), "--warm-start", str(old),
                 "--lr", "0.0005") == 0
    assert load_checkpoint(tmp_path / "given").meta["train_config"]["lr"] == 5e-4
    capsys.readouterr()
