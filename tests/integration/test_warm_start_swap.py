"""The continuous training loop end to end: a new item's events arrive, a warm-started
retrain from the events topic publishes a version into the model repository, the
worker swaps it in, and the new item is recommended after the items it follows."""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from streamrec.cli.main import build_parser
from streamrec.encoder import repository
from streamrec.encoder.checkpoint import load_checkpoint
from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from tests.integration.helpers import consume_until, event, producer, running

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]

T0 = 1_700_000_000_000
CHAIN = [f"c{n}" for n in range(30)]  # users walk this catalogue in order
NEW = "n1"  # a new item: users now take it between c4 and c5


def train(*flags: str) -> None:
    args = build_parser().parse_args(["train", "--no-progress", *flags])
    assert args.handler(args) == 0


def test_a_new_item_is_recommended_after_a_warm_retrain_is_swapped_in(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path,
) -> None:
    rng = random.Random(0)
    clock = itertools.count(T0)
    send = producer(kafka_bootstrap)

    def walk(user: str, items: list[str]) -> int:
        for item in items:
            ts = next(clock)
            key, value = event(user, item, ts)
            send.send(topics["events"], key=key, value=value)
        return ts

    for n in range(300):  # what the first version learns: c_k is followed by c_k+1
        start = rng.randrange(len(CHAIN) - 10)
        walk(f"a{n}", CHAIN[start:start + 10])
    send.flush()
    repo = tmp_path / "models"
    source = ["--from-topic", topics["events"], "--bootstrap", kafka_bootstrap, "--out",
              str(repo)]
    train(*source, "--repo", "--max-len", "8", "--hidden", "16", "--blocks", "1",
          "--epochs", "15", "--seed", "1")
    v1 = repository.current_version(repo)
    first = load_checkpoint(repo / v1)
    assert NEW not in first.vocab

    worker = Worker(WorkerConfig(
        model_dir=repo, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=0, metrics_host="127.0.0.1", max_batch=64,
        device="cpu", model_check_s=3600, commit_interval_ms=200))
    with running(worker):
        for n in range(200):  # the new item arrives: users now go c4 -> n1 -> c5
            walk(f"b{n}", [*CHAIN[rng.randrange(4):5], NEW, *CHAIN[5:7]])
        send.flush()
        wait_for(lambda: worker.metrics.unknown_items._value.get() >= 200, "the new item")
        began = time.monotonic()
        train(*source, "--warm-start", "--batch-size", "16")  # few epochs, from v1
        warm_seconds = time.monotonic() - began
        v2 = repository.current_version(repo)
        assert v2 != v1
        assert NEW in load_checkpoint(repo / v2).vocab
        worker.request_reload()
        wait_for(lambda: worker.recommender.checkpoint.path.name == v2, "the swap")
        last = walk("probe", CHAIN[2:5])
        send.flush()
        doc = recommendation_for(kafka_bootstrap, topics["recs"], "probe", last)
    send.close()
    config = json.loads((repo / v2 / "config.json").read_text())
    # It grew from v1 exactly (the model version its checkpoint records), not a prefix.
    assert first.model_version
    assert config["meta"]["warm_start"]["from_model_version"] == first.model_version
    items = [i["item_id"] for i in doc["items"]]
    assert doc["model_version"] == worker.recommender.model_version
    # After c2 c3 c4 both c5 (the old walk) and n1 (the new one) are right; v1 could
    # never name n1, v2 ranks it among the first few of the 27 unseen items.
    assert NEW in items[:5], (items, warm_seconds)


def wait_for(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def recommendation_for(bootstrap: str, topic: str, user: str, event_ts: int
                       ) -> dict[str, Any]:
    """The user's recommendation answering its event at `event_ts`."""
    def answered(records: list[Any]) -> bool:
        return any(r.key == user.encode() and json.loads(r.value)["event_ts"] == event_ts
                   for r in records)

    records = consume_until(bootstrap, topic, answered)
    docs = [json.loads(r.value) for r in records if r.key == user.encode()]
    assert docs, f"no recommendation for {user}"
    assert docs[-1]["event_ts"] == event_ts, docs
    return docs[-1]
