"""Items unknown to the serving model, recommended from their content: embedded between
two batches, excluded from the histories that hold them, removed when retired,
re-embedded when their features change, and handed over to a model that learned them.

The content tower is the encoder's (tested in tests/unit/encoder); here a stand-in
returns each item's `features.vector` as its embedding, so the worker's side is tested
with vectors the test chooses.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from streamrec.encoder.config import ContentConfig
from streamrec.encoder.content import featurize
from streamrec.encoder.vocab import ItemVocab
from streamrec.worker.item_records import ItemFeatures
from streamrec.worker.recommend import Recommender
from streamrec.worker.state.items import ItemTable
from tests.unit.worker.helpers import tiny_recommender
from tests.unit.worker.test_catalogue import FakePublisher, live, sample

IDS = [f"i{n}" for n in range(1, 21)]  # rows 1..20
K = 3


class Embedder:
    """Stands in for the content tower: an item's vector is its features' `vector`."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # items per call

    def __call__(self, features: list[ItemFeatures]) -> np.ndarray:
        self.calls.append(len(features))
        return np.stack([f.vector for f in features]).astype(np.float32)


def with_tower(model: Recommender) -> Embedder:
    embed = Embedder()
    model.content_vectors = embed  # type: ignore[method-assign]
    return embed


@pytest.fixture
def model(tmp_path: Path) -> Recommender:
    return tiny_recommender(tmp_path / "a", ItemVocab(IDS), max_len=4)


def query_of(model: Recommender, row: int) -> np.ndarray:
    """The query vector of a user whose history is the one item `row`."""
    return model.encode(np.array([[0, 0, 0, row]]), np.array([1])).queries[0]


def item(item_id: str, vector: np.ndarray, available: bool = True) -> bytes:
    return json.dumps({"item_id": item_id, "available": available,
                       "features": {"categories": ["new"],
                                    "vector": [float(x) for x in vector]}}).encode()


def top(model: Recommender, histories: np.ndarray) -> np.ndarray:
    lengths = (histories > 0).sum(axis=1)
    known, known_lengths = model.known(histories, lengths)
    return model.search(model.encode(known, known_lengths), known, K, histories).rows


def test_an_unknown_item_with_features_is_recommended_from_the_next_batch(
    model: Recommender,
) -> None:
    embed = with_tower(model)
    items, feed, metrics = live(model)
    table = items.table()
    items.apply_to(model)
    user = np.array([[0, 0, 0, 5]])
    assert not (top(model, user) > len(IDS)).any()
    feed.put(b"fresh", item("fresh", 100 * query_of(model, 5)))
    items.poll(FakePublisher())
    items.apply_to(model)
    row = table.row("fresh")
    assert row == len(IDS) + 1, "the worker's first row for an unknown item"
    assert top(model, user)[0, 0] == row
    assert table.ids[row] == "fresh", "published by its item id"
    assert embed.calls == [1]
    assert sample(metrics, "streamrec_items_embedded") == 1
    items.apply_to(model)  # nothing new: nothing embedded again
    assert embed.calls == [1]


def test_a_live_item_in_a_users_history_is_not_recommended_to_them(model: Recommender) -> None:
    with_tower(model)
    items, feed, _ = live(model)
    items.apply_to(model)
    feed.put(b"fresh", item("fresh", 100 * query_of(model, 5)))
    items.poll(FakePublisher())
    items.apply_to(model)
    row = items.table().row("fresh")
    seen = top(model, np.array([[0, 0, row, 5]]))  # the same user, who has seen it
    assert row not in seen[0].tolist()
    assert (seen > 0).all(), "still k items"


def test_retired_live_items_leave_and_come_back_and_updates_re_embed(
    model: Recommender,
) -> None:
    embed = with_tower(model)
    items, feed, metrics = live(model)
    items.apply_to(model)
    q = query_of(model, 5)
    user = np.array([[0, 0, 0, 5]])
    feed.put(b"fresh", item("fresh", 100 * q))
    items.poll(FakePublisher())
    items.apply_to(model)
    row = items.table().row("fresh")
    feed.put(b"fresh", item("fresh", 100 * q, available=False))
    items.poll(FakePublisher())
    items.apply_to(model)
    assert row not in top(model, user)[0].tolist()
    assert sample(metrics, "streamrec_items_embedded") == 0
    feed.put(b"fresh", item("fresh", -100 * q))  # back, with other features
    items.poll(FakePublisher())
    items.apply_to(model)
    assert row not in top(model, user)[0].tolist(), "re-embedded: now far from the user"
    assert model.extra.vectors.tolist() == [(-100 * q).astype(np.float32).tolist()]
    feed.put(b"fresh", None)  # a tombstone
    items.poll(FakePublisher())
    items.apply_to(model)
    assert len(model.extra) == 0
    assert embed.calls == [1, 1]


def test_items_the_model_knows_keep_their_learned_vectors(model: Recommender) -> None:
    embed = with_tower(model)
    items, feed, _ = live(model)
    items.apply_to(model)
    feed.put(b"i4", item("i4", np.ones(8)))
    items.poll(FakePublisher())
    items.apply_to(model)
    assert len(model.extra) == 0
    assert embed.calls == []


def test_a_model_that_learned_the_item_takes_over_at_the_swap(
    model: Recommender, tmp_path: Path,
) -> None:
    with_tower(model)
    items, feed, _ = live(model)
    items.apply_to(model)
    feed.put(b"fresh", item("fresh", 100 * query_of(model, 5)))
    feed.put(b"other", item("other", np.ones(8)))
    items.poll(FakePublisher())
    items.apply_to(model)
    assert len(model.extra) == 2
    learned = tiny_recommender(tmp_path / "b", ItemVocab([*IDS, "fresh"]), max_len=4)
    embed = with_tower(learned)
    items.prepare(learned)  # on the loader thread: only "other" is unknown to it
    assert embed.calls == [1]
    feed.put(b"late", item("late", np.ones(8)))  # arrives between the load and the swap
    items.poll(FakePublisher())
    table, _ = items.table().for_vocab(learned.checkpoint.vocab)
    items.table = lambda: table  # type: ignore[method-assign]
    items.apply_to(learned)
    assert embed.calls == [1, 1], "the swap embeds only what arrived after the load"
    assert sorted(table.ids[learned.extra.rows].tolist()) == ["late", "other"]
    assert table.row("fresh") == len(IDS) + 1, "its learned row"
    assert len(model.extra) == 2, "the old model's table is left as it was"


def test_without_a_content_tower_nothing_is_embedded_and_it_says_so_once(
    model: Recommender, caplog: pytest.LogCaptureFixture,
) -> None:
    model.content_vectors = lambda features: None  # type: ignore[method-assign]
    items, feed, _ = live(model)
    items.apply_to(model)
    with caplog.at_level(logging.WARNING):
        for name in ("x", "y"):
            feed.put(name.encode(), item(name, np.ones(8)))
            items.poll(FakePublisher())
            items.apply_to(model)
    assert len(model.extra) == 0
    assert sum("no content tower" in r.message for r in caplog.records) == 1


def test_past_the_unknown_item_cap_live_items_are_counted_not_kept(
    model: Recommender,
) -> None:
    with_tower(model)
    items, feed, _ = live(model)
    table = ItemTable(model.checkpoint.vocab, max_extra=1)
    items.table = lambda: table  # type: ignore[method-assign]
    items.apply_to(model)
    for name in ("x", "y", "z"):
        feed.put(name.encode(), item(name, np.ones(8)))
    items.poll(FakePublisher())
    items.apply_to(model)
    assert len(model.extra) == 1
    assert items.live.not_kept == 2


def test_the_models_own_tower_embeds_a_live_item(tmp_path: Path) -> None:
    config = ContentConfig(buckets=64, max_words=4)
    known = {i: ItemFeatures(categories=(f"c{n % 3}",)) for n, i in enumerate(IDS)}
    model = tiny_recommender(tmp_path, ItemVocab(IDS), content=config, features=known)
    items, feed, _ = live(model)
    items.apply_to(model)
    feed.put(b"fresh", b'{"item_id": "fresh", "features": {"categories": ["c1"], '
                       b'"text": "a new thing"}}')
    items.poll(FakePublisher())
    items.apply_to(model)
    expected = model.checkpoint.model.content_vectors(featurize(
        [ItemFeatures(categories=("c1",), text="a new thing")], config)).numpy()
    assert items.table().ids[model.extra.rows].tolist() == ["fresh"]
    np.testing.assert_allclose(model.extra.vectors, expected, rtol=1e-6)
    assert np.abs(expected).sum() > 0


def test_fresh_slots_show_live_items_that_lose_on_score(model: Recommender) -> None:
    with_tower(model)
    items, feed, _ = live(model)
    items.apply_to(model)
    feed.put(b"fresh", item("fresh", -100 * query_of(model, 5)))  # far from this user
    items.poll(FakePublisher())
    items.apply_to(model)
    row = items.table().row("fresh")
    user = np.array([[0, 0, 0, 5]])
    assert row not in top(model, user)[0].tolist()
    lengths = (user > 0).sum(axis=1)
    slotted = model.search(model.encode(user, lengths), user, K, user, fresh_slots=1).rows
    assert slotted[0, -1] == row
    assert slotted[0, :-1].tolist() == top(model, user)[0, :-1].tolist()


def test_applied_records_are_forgotten_unless_a_load_refers_back_to_them(
    model: Recommender, tmp_path: Path,
) -> None:
    with_tower(model)
    items, feed, _ = live(model)
    items.apply_to(model)
    for n in range(5000):
        feed.put(f"x{n}".encode(), b'{"item_id": "x%d"}' % n)  # no features
    items.poll(FakePublisher())
    items.apply_to(model)
    assert items.live._noted == []
    loaded = tiny_recommender(tmp_path / "b", ItemVocab(IDS), max_len=4)
    with_tower(loaded)
    items.prepare(loaded)  # a load refers to the records noted from here on
    for n in range(5000):
        feed.put(f"y{n}".encode(), b'{"item_id": "y%d"}' % n)
    items.poll(FakePublisher())
    items.apply_to(model)
    assert len(items.live._noted) == 5000
