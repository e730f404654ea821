"""Item cold start against the real broker: an item published with features, unknown to
the serving model, is recommended to a user whose history matches them within a second
of its record, before any event names it; a retire takes it out again.

The model is trained here, with a content tower, on planted data: items in four
categories, each user meeting items of one category (a few seconds on one thread).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streamrec.encoder.config import ContentConfig, ModelConfig, TrainConfig
from streamrec.encoder.data import Interactions
from streamrec.encoder.features import ItemFeatures
from streamrec.encoder.train import train_model
from streamrec.worker.app import Worker
from tests.integration.helpers import consume_until, event, producer, running
from tests.integration.test_items_topic import config, metric, names, publish_items, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]
__all__ = ["names"]  # the fixture, imported for the tests below

CATEGORIES, PER = 4, 6  # items per category the model learns


def features_of(category: int, n: int) -> ItemFeatures:
    return ItemFeatures((f"genre{category}",), f"word{category} item{n}")


@pytest.fixture(scope="module")
def featured_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with a content tower, trained on users who each stay in one category."""
    users, items = [], []
    for u in range(240):
        cat = u % CATEGORIES
        for step in range(5):
            users.append(f"u{u}")
            items.append(f"c{cat}-{(u // CATEGORIES + step) % PER}")
    data = Interactions.from_pairs(users, items)
    features = {f"c{c}-{n}": features_of(c, n) for c in range(CATEGORIES) for n in range(PER)}
    result = train_model(
        data, ModelConfig(num_items=data.num_items, max_len=8, hidden=16, blocks=1, heads=1,
                          dropout=0.1, emb_dropout=0.1),
        TrainConfig(epochs=20, batch_size=32, lr=5e-3, warmup_steps=10, patience=0,
                    threads=1, max_minutes=1.0, loss="full", eval_users=0),
        progress=False, item_features=features, content=ContentConfig(buckets=256),
        checkpoint_dir=tmp_path_factory.mktemp("featured"))
    assert result.checkpoint is not None
    return result.checkpoint


def test_a_new_item_is_recommended_by_its_features_within_a_second_and_retired_after(
    kafka_bootstrap: str, featured_model: Path, names: dict[str, str],
) -> None:
    bootstrap = kafka_bootstrap
    fresh = "c2-new"  # no event ever names it
    worker = Worker(config(bootstrap, featured_model, names))
    fans = [f"fan{n}" for n in range(4)]  # histories of category 2
    with running(worker):
        wait_for(lambda: worker.ready, "the worker to be ready")
        p = producer(bootstrap)

        def send_round(step: int) -> int:
            """Three category-2 events per fan; returns their `ts`."""
            sent_at = int(time.time() * 1000)
            for n, user in enumerate(fans):
                for i in range(3):
                    key, value = event(user, f"c2-{(n + i + step) % PER}", sent_at)
                    p.send(names["events"], key=key, value=value)
            p.flush()
            return sent_at

        send_round(0)
        published_at = int(time.time() * 1000)  # as the record is sent
        publish_items(bootstrap, names["items"], [(fresh, {
            "item_id": fresh, "features": {"categories": ["genre2"],
                                           "text": "word2 item99"}})])
        for step in range(1, 13):  # events keep coming, none naming the new item
            time.sleep(0.1)
            send_round(step)
        wait_for(lambda: metric(worker, "streamrec_items_embedded") == 1,
                 "the item to be embedded")

        def found(records: list) -> bool:
            return any(fresh in r.value.decode() for r in records)

        recs = [json.loads(r.value) for r in consume_until(bootstrap, names["recs"], found,
                                                             timeout_s=30)]
        naming = [r for r in recs if fresh in {x["item_id"] for x in r["items"]}]
        assert naming, "the new item was never recommended"
        first = min(r["produced_ts"] for r in naming)
        assert first - published_at <= 1000, f"first recommended {first - published_at} ms " \
                                             "after its record"
        assert {r["user_id"] for r in naming} <= set(fans)

        publish_items(bootstrap, names["items"], [(fresh, None)])  # retired
        wait_for(lambda: metric(worker, "streamrec_items_embedded") == 0,
                 "the retire to be read")
        retired_at = int(time.time() * 1000)
        last = send_round(20)
        recs = [json.loads(r.value) for r in consume_until(
            bootstrap, names["recs"],
            lambda rs: sum(json.loads(r.value)["event_ts"] >= last for r in rs) >= len(fans),
            timeout_s=30)]
        after = [r for r in recs if r["event_ts"] >= retired_at]
        assert len(after) >= len(fans)
        assert all(fresh not in {x["item_id"] for x in r["items"]} for r in after)
        p.close()
