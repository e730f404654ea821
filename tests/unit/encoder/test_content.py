"""The content tower's inputs and outputs: stable hashing, padded tensors, zero for no features."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from streamrec.common.errors import ConfigError
from streamrec.encoder.config import ContentConfig
from streamrec.encoder.content import (
    ContentTower,
    feature_vocabulary,
    featurize,
    text_tokens,
    token_bucket,
    vector_dim_of,
)
from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.features import ItemFeatures

SMALL = ContentConfig(buckets=64, max_categories=2, max_words=4, vector_dim=3)


def test_a_token_lands_in_the_same_bucket_in_every_process() -> None:
    # Fixed expectations: a change here re-buckets every trained model's features, and
    # must come with a new TOKENIZER_VERSION.
    assert token_bucket("c:shoes", ContentConfig()) == 30263
    assert token_bucket("t:red", ContentConfig()) == 4378
    assert token_bucket("c:shoes", ContentConfig(buckets=2**16)) == 12394
    assert token_bucket("c:shoes", ContentConfig(salt="x")) == 28445
    code = ("from streamrec.encoder.config import ContentConfig; "
            "from streamrec.encoder.content import token_bucket; "
            "print(token_bucket('c:shoes', ContentConfig()))")
    env = os.environ | {"PYTHONHASHSEED": "1"}  # str hash() differs from this process's
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env, timeout=120).stdout.strip()
    assert out == "30263"


def test_text_tokens_are_normalised_words_and_bigrams_in_text_order() -> None:
    config = ContentConfig(max_words=5)
    assert text_tokens("Red  shoes, RED shoes! Ｒｅｄ", config) == [
        "t:red", "t:shoes", "b:red shoes", "b:shoes red"]
    assert len(text_tokens(" ".join(f"w{i}" for i in range(50)), config)) == 5
    assert text_tokens("a b", dataclasses.replace(config, bigrams=False)) == ["t:a", "t:b"]


def test_featurize_pads_each_field_into_its_own_columns() -> None:
    items = [
        ItemFeatures(("a", "b", "c"), "one two three", np.array([3, 4, 0], np.float32)),
        None,
        ItemFeatures(text="two"),
        ItemFeatures(("a", "a")),
    ]
    inputs = featurize(items, SMALL)
    assert inputs.tokens.shape == (4, 6)
    assert inputs.tokens.dtype == torch.int32
    assert inputs.vector.shape == (4, 3)
    assert inputs.has_vector.tolist() == [True, False, False, False]
    tokens = inputs.tokens.tolist()
    bucket = {t: token_bucket(t, SMALL) for t in ("c:a", "c:b", "t:one", "t:two")}
    assert tokens[0][:2] == [bucket["c:a"], bucket["c:b"]]  # the first 2 categories
    assert tokens[0][2:4] == [bucket["t:one"], bucket["t:two"]]  # then the words
    assert all(t > 0 for t in tokens[0])  # 4 text tokens fill the word columns
    assert tokens[1] == [0] * 6
    assert tokens[2] == [0, 0, bucket["t:two"], 0, 0, 0]
    assert tokens[3] == [bucket["c:a"], 0, 0, 0, 0, 0]  # distinct categories only
    assert torch.allclose(inputs.vector[0], torch.tensor([0.6, 0.8, 0.0]))  # unit length
    assert inputs.present().tolist() == [True, False, True, True]


def test_a_vector_of_another_length_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    items = [ItemFeatures(vector=np.ones(2, np.float32)), ItemFeatures(("x",))]
    with caplog.at_level(logging.WARNING, logger="streamrec.encoder.content"):
        inputs = featurize(items, SMALL)
    assert inputs.has_vector.tolist() == [False, False]
    assert inputs.present().tolist() == [False, True]
    assert "another length" in caplog.text
    without = featurize([ItemFeatures(vector=np.ones(3, np.float32))],
                        dataclasses.replace(SMALL, vector_dim=0))
    assert without.vector.shape == (1, 0)
    assert not without.has_vector.any()


def test_the_vector_dimension_comes_from_the_features() -> None:
    assert vector_dim_of([ItemFeatures(), ItemFeatures(vector=np.ones(5, np.float32))]) == 5
    assert vector_dim_of([ItemFeatures(("a",))]) == 0
    with pytest.raises(DataFormatError, match="different lengths"):
        vector_dim_of([ItemFeatures(vector=np.ones(5, np.float32)),
                       ItemFeatures(vector=np.ones(4, np.float32))])


@pytest.mark.parametrize("bad", [{"buckets": 1}, {"max_words": 0}, {"id_dropout": 1.0},
                                 {"vector_dim": -1}, {"tokenizer": 99}, {"min_items": -1},
                                 {"token_dropout": 1.0}])
def test_bad_content_configs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ContentConfig(**bad)  # type: ignore[arg-type]


def test_content_config_round_trips_and_refuses_unknown_fields() -> None:
    assert ContentConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ConfigError, match="unknown"):
        ContentConfig.from_dict(SMALL.to_dict() | {"colour": 1})
    with pytest.raises(ConfigError, match="missing"):
        ContentConfig.from_dict({"buckets": 8})


def test_a_config_from_before_the_vocabulary_reads_as_what_it_was_trained_with() -> None:
    old = {k: v for k, v in SMALL.to_dict().items() if k not in ("min_items", "token_dropout")}
    config = ContentConfig.from_dict(old)
    assert (config.min_items, config.token_dropout) == (0, 0.0)  # every bucket, no dropout
    assert ContentConfig().min_items >= 1  # what a new tower gets
    tower = ContentTower(config, hidden=4, init_std=0.02)
    assert "known" not in tower.state_dict()  # its weights file has no vocabulary either


def test_tower_output_is_the_sum_of_field_means_and_zero_without_features() -> None:
    torch.manual_seed(0)
    tower = ContentTower(SMALL, hidden=8, init_std=0.02)
    items = [ItemFeatures(("a", "b"), "one", np.array([0, 0, 2], np.float32)), None,
             ItemFeatures(("a",))]
    inputs = featurize(items, SMALL)
    out = tower(inputs)
    assert out.shape == (3, 8)
    assert torch.equal(out[1], torch.zeros(8))
    table = tower.buckets.weight
    rows = {t: table[token_bucket(t, SMALL)] for t in ("c:a", "c:b", "t:one")}
    assert tower.vector is not None
    expected = ((rows["c:a"] + rows["c:b"]) / 2 + rows["t:one"]
                + tower.vector.weight[:, 2] + tower.vector.bias)
    assert torch.allclose(out[0], expected, atol=1e-6)
    assert torch.allclose(out[2], rows["c:a"], atol=1e-7)


def test_tokens_outside_the_vocabulary_count_for_nothing_and_dilute_no_mean() -> None:
    config = dataclasses.replace(SMALL, buckets=4096, vector_dim=0, min_items=2,
                                 unknown_rows=False)
    torch.manual_seed(0)
    tower = ContentTower(config, hidden=8, init_std=0.02).eval()
    trained = [ItemFeatures(("drama",), "star wars"), ItemFeatures(("drama",), "star trek"),
               ItemFeatures(("comedy",), "airplane")]
    # Tokens are counted, not buckets: two words of one item each that hash to one
    # bucket do not make it a shared one.
    seen: dict[int, str] = {}
    word = next(f"w{n}" for n in range(10_000)
                if seen.setdefault(token_bucket(f"t:w{n}", config), f"w{n}") != f"w{n}")
    twin = seen[token_bucket(f"t:{word}", config)]
    known = feature_vocabulary([*trained, ItemFeatures((), word), ItemFeatures((), twin)],
                               config)
    assert set(torch.nonzero(known).ravel().tolist()) == {
        token_bucket(t, config) for t in ("c:drama", "t:star")}
    assert tower.set_vocabulary(known) == 2
    rows = {t: tower.buckets.weight[token_bucket(t, config)] for t in ("c:drama", "t:star")}
    new = featurize([ItemFeatures(("drama", "comedy"), "star gate"),
                     ItemFeatures(("western",), "unforgiven")], config)
    out = tower(new)
    # "comedy" (one trained item), "gate" and the bigrams (none) read as padding: the
    # known tokens' means are not diluted by them.
    assert torch.allclose(out[0], rows["c:drama"] + rows["t:star"], atol=1e-7)
    assert torch.equal(out[1], torch.zeros(8))  # nothing it knows: no content at all
    assert tower.reads(new).tolist() == [True, False]
    unknown = dataclasses.replace(config, min_items=0)
    assert feature_vocabulary(trained, unknown)[1:].all()  # no vocabulary: every bucket
    grown = torch.zeros(config.buckets, dtype=torch.bool)
    grown[token_bucket("t:gate", config)] = True
    assert tower.set_vocabulary(grown, extend=True) == 3  # a warm start adds, never drops


def test_token_dropout_leaves_tokens_out_while_training_only() -> None:
    config = dataclasses.replace(SMALL, vector_dim=0, min_items=0, token_dropout=0.5)
    torch.manual_seed(0)
    tower = ContentTower(config, hidden=8, init_std=0.02)
    inputs = featurize([ItemFeatures(("a", "b"), "one two")] * 200, config)
    with torch.no_grad():
        tower.eval()
        full = tower(inputs)
        tower.train()
        dropped = tower(inputs)
    assert torch.allclose(full, full[:1].expand(200, -1))  # eval: every token, every time
    differs = ~torch.isclose(dropped, full, atol=1e-7).all(dim=1)  # [200]
    assert 0.5 < differs.float().mean() < 1.0  # most draws leave some token out


def test_unknown_rows_stand_for_the_tokens_outside_the_vocabulary() -> None:
    config = dataclasses.replace(SMALL, buckets=4096, vector_dim=0, min_items=2,
                                 unknown_rows=True)
    torch.manual_seed(0)
    tower = ContentTower(config, hidden=8, init_std=0.02).eval()
    assert tower.unknown is not None
    assert set(tower.state_dict()) == {"buckets.weight", "known", "unknown"}
    trained = [ItemFeatures(("drama",), "star wars"), ItemFeatures(("drama",), "star trek")]
    tower.set_vocabulary(feature_vocabulary(trained, config))
    star = tower.buckets.weight[token_bucket("t:star", config)]
    drama = tower.buckets.weight[token_bucket("c:drama", config)]
    new = featurize([ItemFeatures(("drama", "noir"), "star gate"),
                     ItemFeatures(("western",), "unforgiven")], config)
    out = tower(new)
    # "noir" is half the categories; "gate" and "b:star gate" two thirds of the text.
    want = ((drama + tower.unknown[0]) / 2 + (star + 2 * tower.unknown[1]) / 3)
    assert torch.allclose(out[0], want, atol=1e-7)
    assert torch.allclose(out[1], tower.unknown[0] + tower.unknown[1], atol=1e-7)
    assert tower.reads(new).tolist() == [True, True]  # an unknown word still says something
    plain = ContentTower(dataclasses.replace(config, min_items=0), hidden=8, init_std=0.02)
    assert plain.unknown is None  # without a vocabulary nothing is unknown
