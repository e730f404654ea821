"""The live item catalogue: the state each record leaves, the rows the serving model
never recommends from the next batch on, bad records dead-lettered, a swapped-in model
given the same items by id, and the popular fallback skipping retired items."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.port import ConsumedRecord
from streamrec.worker.catalogue import Catalogue, LiveCatalogue
from streamrec.worker.config import WorkerConfig
from streamrec.worker.errors import WorkerStalledError
from streamrec.worker.item_records import ItemFeatures, ItemRecord, parse_item_record
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.recommend import Encoded, Recommender
from streamrec.worker.state.items import ItemTable
from streamrec.worker.validate import Invalid, Limits
from tests.unit.worker.helpers import tiny_recommender

IDS = [f"i{n}" for n in range(1, 31)]  # rows 1..30
K = 5


def retire(item: str) -> ItemRecord:
    return ItemRecord(item, available=False)


def back(item: str) -> ItemRecord:
    return ItemRecord(item, available=True)


def test_each_record_is_the_items_whole_state() -> None:
    catalogue = Catalogue(ItemVocab(IDS))
    shoe = ItemRecord("i3", True, ItemFeatures(categories=("shoes",)))
    assert catalogue.apply(shoe) is True  # new
    assert catalogue.get("i3") == shoe
    assert catalogue.take_mask() is None  # available and known: nothing to mask
    assert catalogue.apply(retire("i3")) is False
    mask = catalogue.take_mask()
    assert np.flatnonzero(mask).tolist() == [3]
    assert catalogue.get("i3").features is None  # the latest record is the state
    assert catalogue.take_mask() is None  # unchanged since
    catalogue.apply(ItemRecord("i3", False, tombstone=True))
    assert catalogue.take_mask() is None  # retired either way
    catalogue.apply(back("i3"))
    assert not catalogue.take_mask().any()
    assert (len(catalogue), catalogue.retired) == (1, 0)


def test_items_the_model_does_not_know_are_kept_but_mask_nothing() -> None:
    catalogue = Catalogue(ItemVocab(IDS))
    catalogue.apply(ItemRecord("new-item", True, ItemFeatures(text="soon")))
    catalogue.apply(retire("other-new"))
    assert catalogue.take_mask() is None
    assert catalogue.get("new-item").features.text == "soon"
    assert (len(catalogue), catalogue.retired) == (2, 1)


def test_another_vocabulary_gets_the_retired_items_by_id() -> None:
    catalogue = Catalogue(ItemVocab(IDS))
    for item in ("i2", "i30", "gone-from-next"):
        catalogue.apply(retire(item))
    catalogue.take_mask()
    catalogue.use_vocab(ItemVocab(["i30", "x", "gone-from-next", "i2"]))
    assert np.flatnonzero(catalogue.take_mask()).tolist() == [1, 3, 4]


def test_a_mask_prepared_off_the_loop_catches_up_with_the_changes_made_meanwhile() -> None:
    """What the loader thread prepares for the next model, plus the records applied
    between its snapshot and the swap, equals a rebuild at the swap."""
    catalogue = Catalogue(ItemVocab(IDS))
    for item in ("i1", "i2", "i3", "later-known"):
        catalogue.apply(retire(item))
    nxt = ItemVocab([*reversed(IDS), "later-known", "later-retired"])
    prepared = catalogue.prepare(nxt)
    catalogue.apply(back("i2"))  # after the snapshot: journaled
    catalogue.apply(retire("i4"))
    catalogue.apply(retire("later-retired"))
    catalogue.apply(retire("i4"))  # no change: not journaled again
    catalogue.use_vocab(nxt, prepared)
    want = Catalogue(ItemVocab(IDS))
    for record in (retire("i1"), retire("i3"), retire("i4"), retire("later-known"),
                   retire("later-retired")):
        want.apply(record)
    want.use_vocab(nxt)
    np.testing.assert_array_equal(catalogue.take_mask(), want.take_mask())
    stale = catalogue.prepare(ItemVocab(IDS))
    catalogue.use_vocab(nxt)  # another swap in between: the journal it counted on is gone
    catalogue.apply(back("i1"))
    catalogue.use_vocab(stale.vocab, stale)
    assert np.flatnonzero(catalogue.take_mask()).tolist() == [3, 4]  # i3, i4: rebuilt


class FakeFeed:
    """What LiveCatalogue needs of ItemsFeed, fed by the test."""

    def __init__(self) -> None:
        self.topic = "items"
        self.loaded = threading.Event()
        self.error: BaseException | None = None
        self.progressed_at = time.monotonic()
        self.read = self.behind = 0
        self.parsed: list[Any] = []
        self.offset = 0

    @property
    def waiting(self) -> bool:
        return bool(self.parsed)

    def take(self) -> list[Any]:
        taken, self.parsed = self.parsed, []
        return taken

    def put(self, key: bytes | None, value: bytes | None) -> None:
        rec = ConsumedRecord("items", 0, self.offset, 0, key, value, [])
        self.offset += 1
        self.parsed.append((rec, parse_item_record(key, value, Limits())))

    def close(self) -> None:
        pass


class FakePublisher:
    def __init__(self) -> None:
        self.dead: list[tuple[bytes | None, bytes | None, Invalid, str]] = []

    def send_dead_letter(self, key: bytes | None, value: bytes | None, invalid: Invalid,
                         source: str) -> None:
        self.dead.append((key, value, invalid, source))


@pytest.fixture
def model(tmp_path: Path) -> Recommender:
    return tiny_recommender(tmp_path / "a", ItemVocab(IDS), max_len=4)


def live(model: Recommender, **config: Any) -> tuple[LiveCatalogue, FakeFeed, WorkerMetrics]:
    metrics = WorkerMetrics()
    table = ItemTable(model.checkpoint.vocab)
    items = LiveCatalogue(WorkerConfig(model_dir=Path("."), **config), metrics, lambda: table)
    items.feed = FakeFeed()  # type: ignore[assignment]
    return items, items.feed, metrics  # type: ignore[return-value]


def recommend(model: Recommender, histories: np.ndarray) -> np.ndarray:
    lengths = (histories > 0).sum(axis=1)
    return model.search(model.encode(histories, lengths), histories, K).rows


def every_history() -> np.ndarray:
    """One user per item with a one-item history, and one user with none (popular)."""
    rows = np.zeros((len(IDS) + 1, 4), dtype=np.int64)
    rows[:-1, -1] = np.arange(1, len(IDS) + 1)
    return rows


def sample(metrics: WorkerMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_a_retired_item_is_never_recommended_from_the_next_batch_until_it_is_back(
    model: Recommender,
) -> None:
    items, feed, metrics = live(model)
    publisher = FakePublisher()
    items.apply_to(model)
    before = recommend(model, every_history())
    top = int(np.bincount(before[before > 0]).argmax())  # the item recommended most
    feed.put(IDS[top - 1].encode(), b'{"item_id": "%s", "available": false}' % IDS[top - 1]
             .encode())
    feed.put(b"i1", None)  # a tombstone
    items.poll(publisher)
    items.apply_to(model)
    after = recommend(model, every_history())
    assert not np.isin(after, [top, 1]).any()
    assert (after > 0).all(), "every user still gets k items"
    assert model.popular(K)[0].tolist() == [r for r in range(2, 8) if r != top][:K]
    assert sample(metrics, "streamrec_items_retired") == 2
    feed.put(IDS[top - 1].encode(), b'{"item_id": "%s"}' % IDS[top - 1].encode())
    items.poll(publisher)
    items.apply_to(model)
    assert np.isin(recommend(model, every_history()), [top]).any()
    assert sample(metrics, "streamrec_items_available") == 1
    assert publisher.dead == []


def test_the_popular_fallback_skips_retired_items_even_when_most_are(
    model: Recommender,
) -> None:
    mask = np.zeros(len(IDS) + 1, dtype=bool)
    mask[1:28] = True  # all but three items retired, the most popular ones first
    model.set_unavailable(mask)
    rows, scores = model.popular(K)
    assert rows.tolist() == [28, 29, 30]
    assert len(scores) == 3
    empty = np.zeros((1, 4), dtype=np.int64)
    found = model.search(Encoded(np.zeros((1, model.index.dim), np.float32),
                                 np.zeros((1, 4), np.float32), np.zeros(1, bool)), empty, K)
    assert found.rows[0].tolist() == [28, 29, 30, -1, -1]


def test_bad_records_go_to_the_dead_letter_topic_with_their_reason(model: Recommender) -> None:
    items, feed, metrics = live(model)
    publisher = FakePublisher()
    feed.put(b"i2", b'{"item_id": "i2", "available": "no"}')
    feed.put(b"i3", b"x" * 70_000)
    feed.put(b"i4", b'{"item_id": "i4"}')
    items.poll(publisher)
    assert [(d[0], d[2].reason, d[3]) for d in publisher.dead] == [
        (b"i2", "bad_available", "items/0/0"), (b"i3", "oversize", "items/0/1")]
    assert sample(metrics, "streamrec_item_records_invalid_total",
                  {"reason": "bad_available"}) == 1
    assert items.catalogue.get("i4") is not None
    assert items.catalogue.get("i2") is None


def test_start_up_waits_for_the_whole_topic_and_counts_later_items_as_live(
    model: Recommender,
) -> None:
    items, feed, metrics = live(model)
    publisher = FakePublisher()
    feed.put(b"i5", None)
    feed.put(b"new-1", b'{"item_id": "new-1"}')
    waiter = threading.Thread(target=items.wait_loaded, args=(publisher, lambda: False))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive()
    assert not items.loaded
    feed.put(b"new-2", b'{"item_id": "new-2"}')  # read before the end: not live
    feed.loaded.set()
    waiter.join(timeout=5)
    assert items.loaded
    assert len(items.catalogue) == 3
    assert sample(metrics, "streamrec_items_added_live_total") == 0
    feed.put(b"new-3", b'{"item_id": "new-3"}')
    feed.put(b"new-2", b'{"item_id": "new-2", "available": false}')  # not new
    items.poll(publisher)
    assert sample(metrics, "streamrec_items_added_live_total") == 1
    items.apply_to(model)
    assert model.index.unavailable.rows.tolist() == [5]


def test_a_start_up_read_that_makes_no_progress_is_a_stall(model: Recommender) -> None:
    items, feed, _ = live(model, max_stall_s=0.3)
    feed.progressed_at = time.monotonic()
    with pytest.raises(WorkerStalledError, match="items topic"):
        items.wait_loaded(FakePublisher(), lambda: False)
    stopped, _, _ = live(model)
    stopped.wait_loaded(FakePublisher(), lambda: True)  # a stop leaves the wait at once
    assert not stopped.loaded


def test_a_failed_read_stops_the_worker_with_its_error(model: Recommender) -> None:
    items, feed, _ = live(model)
    feed.error = RuntimeError("broker gone")
    with pytest.raises(RuntimeError, match="broker gone"):
        items.poll(FakePublisher())


def test_a_swapped_in_model_gets_the_retired_items_by_id(model: Recommender,
                                                         tmp_path: Path) -> None:
    items, feed, _ = live(model)
    items.apply_to(model)
    feed.put(b"i7", None)
    feed.put(b"i9", b'{"item_id": "i9", "available": false}')
    items.poll(FakePublisher())
    items.apply_to(model)
    # The next version knows the items in another order, and i9 no more; it is loaded
    # (its mask prepared on the loader thread) while i8 is retired.
    reordered = ItemVocab([*reversed(IDS[:8]), "n1", "n2"])
    new = tiny_recommender(tmp_path / "b", reordered, max_len=4)
    items.prepare(new)
    feed.put(b"i8", None)
    items.poll(FakePublisher())
    items.apply_to(new)
    assert new.index.unavailable.rows.tolist() == sorted(
        [reordered.row("i7"), reordered.row("i8")])
    feed.put(b"i8", b'{"item_id": "i8"}')
    items.poll(FakePublisher())
    items.apply_to(new)
    assert new.index.unavailable.rows.tolist() == [reordered.row("i7")]
    users = np.zeros((11, 4), dtype=np.int64)
    users[:-1, -1] = np.arange(1, 11)  # one user per item, and one with no history
    found = recommend(new, users)
    assert (found > 0).all()
    assert not (found == reordered.row("i7")).any()
