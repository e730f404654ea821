"""Training, saving and warm-starting a model with a content tower; and what it is for:
content alone places items the model never saw among the items they are like."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.common.errors import ConfigError
from streamrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from streamrec.encoder.config import ContentConfig, ModelConfig, TrainConfig
from streamrec.encoder.content import featurize, token_bucket
from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import CheckpointError, TrainingError
from streamrec.encoder.features import ItemFeatures
from streamrec.encoder.model import SASRec
from streamrec.encoder.train import TrainResult, train_model
from streamrec.encoder.vocab import ItemVocab
from streamrec.encoder.warmstart import grow_interactions, warm_model_config, warm_start

K, PER, HELD_OUT = 8, 24, 4  # categories, items per category, items per category never seen
CONTENT = ContentConfig(buckets=1024, id_dropout=0.5)
HISTORIES = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])


def category(item: str) -> int:
    return int(item[1:].split("_")[0])


@pytest.fixture(scope="module")
def planted() -> tuple[Interactions, dict[str, ItemFeatures]]:
    """Items in K categories; each user meets 8 items of one category. An item has one
    of its category's 3 tags and one of its 6 words (and a word of its own), so it
    shares its exact tokens with a few items of its category only: to place it among
    all of them the tower must learn which tokens go together. The last HELD_OUT items
    of each category have features but appear in no history."""
    rng = np.random.default_rng(0)
    features = {f"i{k}_{j}": ItemFeatures((f"tag{k}_{rng.integers(3)}",),
                                          f"w{k}_{rng.integers(6)} own{k}_{j}")
                for k in range(K) for j in range(PER)}
    users, items = [], []
    for u in range(300):
        for j in rng.choice(PER - HELD_OUT, 8, replace=False):
            users.append(f"u{u}")
            items.append(f"i{u % K}_{j}")
    return Interactions.from_pairs(users, items), features


def tiny(data: Interactions, epochs: int = 15) -> tuple[ModelConfig, TrainConfig]:
    return (ModelConfig(num_items=data.num_items, max_len=8, hidden=16, blocks=1, heads=1,
                        dropout=0.1, emb_dropout=0.1),
            TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, warmup_steps=10, patience=0,
                        threads=1, max_minutes=1.0, loss="full", eval_users=0))


@pytest.fixture(scope="module")
def trained(planted: tuple[Interactions, dict[str, ItemFeatures]],
            tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    data, features = planted
    return train_model(data, *tiny(data), progress=False, item_features=features,
                       content=CONTENT, checkpoint_dir=tmp_path_factory.mktemp("ckpt"))


def test_content_alone_places_unseen_items_among_their_category(
    planted: tuple[Interactions, dict[str, ItemFeatures]], trained: TrainResult,
) -> None:
    data, features = planted
    model = trained.model
    unseen = sorted(set(features) - set(data.vocab.ids))
    assert len(unseen) == K * HELD_OUT
    vectors = model.content_vectors(featurize([features[i] for i in unseen], CONTENT))
    with torch.inference_mode():
        table = model.item_embeddings()[1:]  # [V, d]
    known = np.array([category(i) for i in data.vocab.ids])
    # Each unseen item against the known items: where do those of its category rank?
    # 0.06 when they all come first, 0.5 at random; an untrained tower (only the exact
    # tokens shared) reaches 0.15.
    scores = (vectors @ table.T).numpy()  # [unseen, V]
    ranks = np.argsort(np.argsort(-scores, axis=1), axis=1) / scores.shape[1]
    same = [ranks[n, known == category(i)].mean() for n, i in enumerate(unseen)]
    assert np.mean(same) < 0.1
    # What the worker will do: a user's query over the known items and the unseen ones
    # side by side. The unseen items of the user's category follow its 20 known ones
    # (0.11 of 192 items), and do not drift among other categories' (0.25 untrained).
    users = list(range(0, 300, 3))
    query, _ = model.encode(torch.as_tensor(np.stack([data.sequences[u] for u in users])))
    scores = (query @ torch.cat([table, vectors]).T).numpy()  # [users, V + unseen]
    ranks = np.argsort(np.argsort(-scores, axis=1), axis=1)[:, len(table):] / scores.shape[1]
    kind = np.array([category(i) for i in unseen])
    user_kind = [known[data.sequences[u][0] - 1] for u in users]
    assert np.mean([ranks[n, kind == k].mean() for n, k in enumerate(user_kind)]) < 0.15


def test_id_dropout_lets_unseen_items_compete_with_known_ones() -> None:
    """Items are popular in proportion to 1/rank^0.7 within their category, and 4 per
    category, of any popularity, are held out. A known item's ID row carries its
    popularity, which content alone cannot; without ID dropout the content part
    never learns to stand for an item alone, and an unseen item never makes a user's
    top 10 among the known ones."""
    rng = np.random.default_rng(0)
    features = {f"i{k}_{j}": ItemFeatures((f"tag{k}_{rng.integers(3)}",),
                                          f"w{k}_{rng.integers(6)} own{k}_{j}")
                for k in range(K) for j in range(PER)}
    popularity = 1 / (np.arange(PER) + 1.0) ** 0.7
    walks = [[f"i{u % K}_{j}" for j in rng.choice(PER, 8, replace=False,
                                                   p=popularity / popularity.sum())]
             for u in range(600)]
    cold = {f"i{k}_{j}" for k in range(K) for j in rng.choice(PER, HELD_OUT, replace=False)}
    warm = [[i for i in walk if i not in cold] for walk in walks]
    data = Interactions.from_pairs([f"u{u}" for u, w in enumerate(warm) for _ in w],
                                   [i for w in warm for i in w])
    unseen = sorted(cold)
    hits = {}
    for id_dropout in (0.0, 0.5):
        content = ContentConfig(buckets=1024, id_dropout=id_dropout)
        model = train_model(data, *tiny(data), progress=False, item_features=features,
                            content=content).model
        with torch.inference_mode():
            rows = torch.cat([model.item_embeddings()[1:], model.content_vectors(
                featurize([features[i] for i in unseen], content))])  # [V + C, d]
        names = [*data.vocab.ids, *unseen]
        found = cases = 0
        for walk, known in zip(walks, warm, strict=True):
            if len(known) == len(walk) or not known:
                continue
            query, _ = model.encode(torch.as_tensor(data.vocab.rows(known))[None])
            scores = (query @ rows.T)[0]
            scores[[names.index(i) for i in known]] = -torch.inf
            top = {names[r] for r in scores.topk(10).indices.tolist()}
            found += len(top & (set(walk) - set(known)))
            cases += len(set(walk) - set(known))
        hits[id_dropout] = found / cases
    assert hits[0.0] == 0.0
    assert hits[0.5] > 0.015  # 0.027: few, since popularity decides most of a top 10


def test_the_checkpoint_keeps_the_tower_and_scores_identically(trained: TrainResult) -> None:
    assert trained.checkpoint is not None
    ckpt = load_checkpoint(trained.checkpoint)
    assert ckpt.content == CONTENT
    assert ckpt.model.content_config == CONTENT
    doc = json.loads((trained.checkpoint / "config.json").read_text(encoding="utf-8"))
    assert doc["content"] == CONTENT.to_dict()
    assert doc["meta"]["content"]["items_with_features"] == ckpt.config.num_items
    assert ckpt.model.content_tokens.dtype == torch.int32
    assert torch.equal(ckpt.model.content_tokens, trained.model.content_tokens.cpu())
    with torch.inference_mode():
        assert torch.equal(ckpt.model.item_embeddings(), trained.model.item_embeddings())
        assert torch.equal(ckpt.model.encode(HISTORIES)[0], trained.model.encode(HISTORIES)[0])


def test_a_checkpoint_without_a_tower_loads_as_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SASRec(ModelConfig(num_items=6, max_len=5, hidden=8, blocks=1)).eval()
    popularity = np.ones(7, np.float32)
    path = save_checkpoint(tmp_path / "plain", model, ItemVocab(list("abcdef")), popularity)
    doc = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert set(doc) == {"format_version", "model_version", "created", "model", "vocab_size",
                        "sha256", "meta"}  # what a checkpoint held before the tower
    ckpt = load_checkpoint(path)
    assert ckpt.content is None
    assert ckpt.model.content is None
    assert torch.equal(ckpt.model.encode(HISTORIES[:, -3:] % 7)[0],
                       model.encode(HISTORIES[:, -3:] % 7)[0])


def test_a_tower_that_does_not_match_config_json_is_refused(trained: TrainResult,
                                                            tmp_path: Path) -> None:
    assert trained.checkpoint is not None
    ckpt = load_checkpoint(trained.checkpoint)
    path = save_checkpoint(tmp_path / "copy", ckpt.model, ckpt.vocab, ckpt.popularity)
    doc = json.loads((path / "config.json").read_text(encoding="utf-8"))
    doc["content"]["buckets"] = 2048
    (path / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"content\.buckets\.weight"):
        load_checkpoint(path)
    doc["content"] = {"buckets": "many"}
    (path / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CheckpointError, match="bad model config"):
        load_checkpoint(path)


def test_warm_start_keeps_the_tower_and_grows_its_features(
    planted: tuple[Interactions, dict[str, ItemFeatures]], trained: TrainResult,
) -> None:
    assert trained.checkpoint is not None
    previous = load_checkpoint(trained.checkpoint)
    _, features = planted
    newer = Interactions.from_pairs(["n1"] * 4 + ["n2"] * 3,
                                    ["i0_0", "i0_20", "i0_21", "i0_1", "i1_20", "i1_0", "brand"])
    grown = grow_interactions(previous.vocab, newer)
    update = {"i0_20": features["i0_20"], "i0_0": ItemFeatures(("renamed",))}
    config = warm_model_config(previous.config, grown.num_items)
    start = warm_start(previous, grown, config, item_features=update,
                       content_overrides={"id_dropout": 0.2, "buckets": None})
    model = start.model
    assert model.content_config == ContentConfig(buckets=1024, id_dropout=0.2)
    old_state = previous.model.state_dict()
    for name in ("content.buckets.weight",):
        assert torch.equal(model.state_dict()[name], old_state[name])
    v_old = previous.config.num_items
    stored, old = model.stored_content(), previous.model.stored_content()
    row = grown.vocab.row
    keep = [r for r in range(v_old + 1) if r != row("i0_0")]
    assert torch.equal(stored.tokens[keep], old.tokens[keep])  # not named: kept
    renamed = featurize([update["i0_0"]], CONTENT).tokens[0]
    assert torch.equal(stored.tokens[row("i0_0")], renamed)  # named: the new features
    assert torch.equal(stored.tokens[row("i0_20")],
                       featurize([features["i0_20"]], CONTENT).tokens[0])
    assert not stored.present()[[row("i0_21"), row("i1_20"), row("brand")]].any()
    with pytest.raises(ConfigError, match="buckets=2048"):
        warm_start(previous, grown, config, content_overrides={"buckets": 2048})
    plain = load_checkpoint(save_checkpoint(
        trained.checkpoint.parent / "plain", SASRec(previous.config).eval(), previous.vocab,
        previous.popularity))
    with pytest.raises(ConfigError, match="no content tower"):
        warm_start(plain, grown, config, item_features=update)
    with pytest.raises(TrainingError, match="warm start brings its own"):
        train_model(grown, config, tiny(grown)[1], initial=start, item_features=update)


def test_a_run_with_a_tower_resumes_only_with_its_tower(
    planted: tuple[Interactions, dict[str, ItemFeatures]], tmp_path: Path,
) -> None:
    data, features = planted
    model_config, train_config = tiny(data, epochs=1)
    train_model(data, model_config, train_config, checkpoint_dir=tmp_path, progress=False,
                item_features=features, content=CONTENT)
    longer = tiny(data, epochs=2)[1]
    resumed = train_model(data, model_config, longer, checkpoint_dir=tmp_path, resume=True,
                          progress=False, item_features=features, content=CONTENT)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    with pytest.raises(TrainingError, match="different model"):
        train_model(data, model_config, longer, checkpoint_dir=tmp_path, resume=True,
                    progress=False)


def test_the_vocabulary_keeps_shared_tokens_of_trained_items_and_the_checkpoint_keeps_it(
    trained: TrainResult,
) -> None:
    tower = trained.model.content
    assert tower is not None
    assert trained.checkpoint is not None
    known = tower.known.cpu()
    assert known[token_bucket("c:tag0_1", CONTENT)]  # a tag many items share
    assert known[token_bucket("t:w3_2", CONTENT)]
    # An item's own word is no second ID (a few share a bucket with a kept token), and a
    # held-out item's never trained: neither counts.
    own = [token_bucket(f"t:own{k}_{j}", CONTENT) for k in range(K) for j in range(PER)]
    assert known[own].float().mean() < 0.15
    meta = json.loads((trained.checkpoint / "config.json").read_text(encoding="utf-8"))
    assert meta["meta"]["content"]["vocabulary_buckets"] == int(known[1:].sum())
    ckpt = load_checkpoint(trained.checkpoint)
    assert ckpt.model.content is not None
    assert torch.equal(ckpt.model.content.known, known)
    # So an unseen item's own word changes nothing: it is read by what it shares.
    alike = [ItemFeatures(("tag0_1",), "w0_2 own0_99"), ItemFeatures(("tag0_1",), "w0_2")]
    vectors = ckpt.model.content_vectors(featurize(alike, CONTENT))
    assert torch.allclose(vectors[0], vectors[1], atol=1e-7)


def test_the_vocabulary_counts_only_items_with_training_interactions() -> None:
    # "late" items are every user's last two (validation and test): never trained on.
    users = [f"u{u}" for u in range(40) for _ in range(5)]
    items = [f"i{(u + t) % 10}" if t < 3 else f"late{u % 4}_{t}" for u in range(40)
             for t in range(5)]
    data = Interactions.from_pairs(users, items)
    features = {i: ItemFeatures(("late",) if i.startswith("late") else ("early",))
                for i in data.vocab.ids}
    model = train_model(data, *tiny(data, epochs=1), progress=False, item_features=features,
                        content=CONTENT).model
    assert model.content is not None
    known = model.content.known.cpu()
    assert known[token_bucket("c:early", CONTENT)]
    assert not known[token_bucket("c:late", CONTENT)]


def test_a_tower_saved_before_the_vocabulary_loads_and_scores_as_it_did(tmp_path: Path) -> None:
    old_config = ContentConfig(buckets=256, min_items=0)  # what every tower used to be
    torch.manual_seed(0)
    config = ModelConfig(num_items=6, max_len=5, hidden=8, blocks=1)
    model = SASRec(config, old_config)
    features = [ItemFeatures((f"c{n % 2}",), f"own{n}") for n in range(6)]
    model.set_item_content(featurize(features, old_config))
    path = save_checkpoint(tmp_path / "old", model.eval(), ItemVocab(list("abcdef")),
                           np.ones(7, np.float32))
    doc = json.loads((path / "config.json").read_text(encoding="utf-8"))
    for key in ("min_items", "token_dropout"):
        del doc["content"][key]  # a config.json written before they existed
    (path / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    ckpt = load_checkpoint(path)
    assert ckpt.content is not None
    assert ckpt.content.min_items == 0
    with torch.inference_mode():
        assert torch.equal(ckpt.model.item_embeddings(), model.item_embeddings())
        assert torch.equal(ckpt.model.content_vectors(featurize(features, old_config)),
                           model.content_vectors(featurize(features, old_config)))


def test_a_warm_start_extends_the_vocabulary_with_what_the_new_items_share(
    planted: tuple[Interactions, dict[str, ItemFeatures]], trained: TrainResult,
) -> None:
    assert trained.checkpoint is not None
    previous = load_checkpoint(trained.checkpoint)
    data, _ = planted
    fresh = {f"new{j}": ItemFeatures(("tag0_0",), "novel") for j in range(6)}
    users = [data.users[u] for u, seq in enumerate(data.sequences) for _ in seq]
    items = [data.vocab.ids[r - 1] for seq in data.sequences for r in seq]
    for u in range(30):  # new users who meet the new items early in their histories
        users += [f"n{u}"] * 6
        items += [f"new{u % 6}", f"new{(u + 1) % 6}", "i0_0", "i0_1", "i0_2", "i0_3"]
    grown = grow_interactions(previous.vocab, Interactions.from_pairs(users, items))
    config = warm_model_config(previous.config, grown.num_items)
    old = previous.model.content
    assert old is not None
    for given, novel in ((None, False), (fresh, True)):  # a file of the new items only
        tower = warm_start(previous, grown, config, item_features=given).model.content
        assert tower is not None
        assert torch.all(tower.known[old.known])  # what it knew, it still knows
        assert bool(tower.known[token_bucket("t:novel", CONTENT)]) is novel
