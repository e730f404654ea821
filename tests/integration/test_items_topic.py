"""The items topic against the real broker: a retired item is never recommended once its
record was read, and comes back with `available: true`; a restarted worker restores the
catalogue from the topic before it reports ready; bad item records are dead-lettered.

Each test has an items topic of its own (3 partitions, compacted as the worker creates
it); the model is the tiny fixture checkpoint (items i1..i40, i1 the most popular).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamrec.cli.main import main
from streamrec.kafka_io.clients import ensure_topics
from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.item_records import ITEMS_TOPIC_CONFIG
from streamrec.worker.publish import HEADER_REASON, HEADER_SOURCE
from streamrec.worker.validate import now_ms
from tests.integration.helpers import consume_until, event, producer, running, scrape

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

K = 10
ITEMS = [f"i{n}" for n in range(1, 41)]
FILLER = 5000  # items of the restart test's catalogue that the model does not know


def config(bootstrap: str, model: Path, names: dict[str, str], **extra: Any) -> WorkerConfig:
    return WorkerConfig(
        model_dir=model, bootstrap=bootstrap, events_topic=names["events"],
        recommendations_topic=names["recs"], dead_letter_topic=names["dlq"],
        items_topic=names["items"], group_id=names["group"], metrics_port=0,
        metrics_host="127.0.0.1", max_batch=32, max_wait_ms=20, k=K, device="cpu",
        commit_interval_ms=200, **extra)


@pytest.fixture
def names(kafka_bootstrap: str, topics: dict[str, str]) -> dict[str, str]:
    items = f"items-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, {items: 3}, configs={items: ITEMS_TOPIC_CONFIG})
    return topics | {"items": items}


def publish_items(bootstrap: str, topic: str, records: list[tuple[str, dict | None]]) -> None:
    """(item id, value document or None for a tombstone), in order."""
    p = producer(bootstrap)
    for item, doc in records:
        p.send(topic, key=item.encode(), value=None if doc is None else json.dumps(doc).encode())
    p.flush()
    p.close()


def send_events(bootstrap: str, topic: str, users: list[str], per_user: int,
                seed: int) -> None:
    """`per_user` events for each user (items spread over the catalogue; a user named
    cold-* gets an item the model does not know: the popular fallback), `ts` = now."""
    p = producer(bootstrap)
    for step in range(per_user):
        for n, user in enumerate(users):
            item = ("unknown-item" if user.startswith("cold-")
                    else ITEMS[(n * 7 + step * 11 + seed) % len(ITEMS)])
            key, value = event(user, item, now_ms())
            p.send(topic, key=key, value=value)
    p.flush()
    p.close()


def recommendations(bootstrap: str, topic: str, users: list[str]) -> list[dict[str, Any]]:
    """Every recommendation on the topic, once each of `users` has one."""
    wanted = set(users)

    def answered(records: list[Any]) -> bool:
        return wanted <= {r.key.decode() for r in records}

    records = consume_until(bootstrap, topic, answered)
    assert answered(records), "not every user got a recommendation"
    return [json.loads(r.value) for r in records]


def items_of(recs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(x["item_id"] for rec in recs for x in rec["items"])


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def metric(worker: Worker, name: str) -> float:
    return scrape(worker.metrics_port).get(name, -1.0)


def test_a_retired_item_is_never_recommended_after_its_record_is_read_until_it_is_back(
    kafka_bootstrap: str, tiny_checkpoint: Path, names: dict[str, str],
) -> None:
    bootstrap = kafka_bootstrap
    publish_items(bootstrap, names["items"], [
        ("i2", {"item_id": "i2", "features": {"categories": ["c1"], "text": "two"}}),
        ("not-in-model", {"item_id": "not-in-model", "features": {"vector": [0.1, 0.2]}}),
    ])
    worker = Worker(config(bootstrap, tiny_checkpoint, names))
    with running(worker) as handle:
        wait_for(lambda: worker.ready, "the worker to read the items and be assigned")
        assert metric(worker, "streamrec_items_available") == 2
        first = [f"a{n}" for n in range(60)] + ["cold-a"]
        send_events(bootstrap, names["events"], first, 3, seed=0)
        before = recommendations(bootstrap, names["recs"], first)
        ranked = [item for item, _ in items_of(before).most_common() if item not in ("i1", "i2")]
        retired, gone = ranked[0], "i1"  # the most recommended, and the most popular
        assert "i1" in items_of([r for r in before if r["user_id"] == "cold-a"])

        publish_items(bootstrap, names["items"], [
            (retired, {"item_id": retired, "available": False}), (gone, None)])
        wait_for(lambda: metric(worker, "streamrec_items_retired") == 2,
                 "the worker to read the retire records")
        read_at = now_ms()  # every batch cut from here on must leave both out
        second = [f"b{n}" for n in range(60)] + ["cold-b"]
        send_events(bootstrap, names["events"], first[:30] + second, 3, seed=5)
        recs = recommendations(bootstrap, names["recs"], second)
        after = [r for r in recs if r["event_ts"] >= read_at]
        assert len(after) >= len(second)
        found = items_of(after)
        assert found[retired] == 0, f"{retired} recommended {found[retired]} times"
        assert found[gone] == 0
        assert all(len(r["items"]) == K for r in after), "every user still gets k items"
        cold = [r for r in after if r["user_id"] == "cold-b"]
        assert cold
        assert cold[0]["explanation"]["strategy"] == "popular"

        publish_items(bootstrap, names["items"], [(retired, {"item_id": retired})])
        wait_for(lambda: metric(worker, "streamrec_items_retired") == 1,
                 f"the worker to read {retired} back")
        back_at = now_ms()
        third = [f"c{n}" for n in range(60)]
        send_events(bootstrap, names["events"], third, 3, seed=0)
        recs = recommendations(bootstrap, names["recs"], third)
        assert items_of([r for r in recs if r["event_ts"] >= back_at])[retired] > 0
        samples = scrape(worker.metrics_port)
        assert samples["streamrec_items_added_live_total"] == 2  # retired, then i1: new ids
        assert samples["streamrec_items_available"] == 3
        assert samples["streamrec_items_lag_records"] == 0
    assert handle.failure == []


def test_a_restarted_worker_restores_the_catalogue_before_it_reports_ready(
    kafka_bootstrap: str, tiny_checkpoint: Path, names: dict[str, str], tmp_path: Path,
) -> None:
    """Items retired by the file at start and while the first worker ran; the second one
    starts with a backlog of events waiting, which its very first batches answer."""
    bootstrap = kafka_bootstrap
    catalogue = tmp_path / "items.jsonl"
    lines = [{"item_id": item, "features": {"categories": [f"c{n % 4}"]}}
             for n, item in enumerate(ITEMS)]
    lines += [{"item_id": f"new-{n}", "features": {"text": "not in the model yet"}}
              for n in range(FILLER)]  # a catalogue that takes its worker a moment to read
    lines += [{"item_id": "i1", "retire": True}, {"item_id": "i2", "available": False}]
    catalogue.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert main(["items", "publish", "--data", str(catalogue), "--bootstrap", bootstrap,
                 "--items-topic", names["items"]]) == 0
    cfg = config(bootstrap, tiny_checkpoint, names)
    first = Worker(cfg)
    with running(first):
        wait_for(lambda: first.ready, "the first worker to be ready")
        users = [f"u{n}" for n in range(60)]
        send_events(bootstrap, names["events"], users, 2, seed=0)
        counts = items_of(recommendations(bootstrap, names["recs"], users))
        live = [item for item, _ in counts.most_common() if item not in ("i1", "i2")][:2]
        publish_items(bootstrap, names["items"], [(item, None) for item in live])
        wait_for(lambda: metric(first, "streamrec_items_retired") == 4,
                 "the first worker to read the tombstones")
        send_events(bootstrap, names["events"], users, 1, seed=3)  # mid-stream: then stop
    retired = {"i1", "i2", *live}
    backlog = [f"v{n}" for n in range(80)]
    send_events(bootstrap, names["events"], backlog, 2, seed=1)  # waits for the restart
    start_ms = now_ms()
    second = Worker(cfg)
    # What the catalogue held when the group first handed the worker its partitions,
    # before any event of the backlog could be applied, and when it reported ready.
    seen: list[tuple[int, int]] = []
    assigned = second._on_assigned

    def on_assigned(partitions: list[Any]) -> None:
        seen.append((len(second.items.catalogue), second.items.catalogue.retired))
        assigned(partitions)

    second._on_assigned = on_assigned  # type: ignore[method-assign]
    with running(second):
        deadline = time.monotonic() + 60
        while not second.ready:
            assert time.monotonic() < deadline, "the restarted worker never got ready"
            time.sleep(0.01)
        seen.append((len(second.items.catalogue), second.items.catalogue.retired))
        recs = recommendations(bootstrap, names["recs"], backlog)
    assert seen[0] == seen[-1] == (len(ITEMS) + FILLER, 4)
    answered = [r for r in recs if r["user_id"] in set(backlog)]
    assert answered
    assert not set(items_of(answered)) & retired
    assert all(r["produced_ts"] >= start_ms for r in answered)


def test_wrong_type_and_oversized_item_records_go_to_the_dead_letter_topic(
    kafka_bootstrap: str, tiny_checkpoint: Path, names: dict[str, str],
) -> None:
    bootstrap = kafka_bootstrap
    publish_items(bootstrap, names["items"], [  # read at start
        ("i3", {"item_id": "i3", "available": "no"})])
    worker = Worker(config(bootstrap, tiny_checkpoint, names))
    with running(worker) as handle:
        wait_for(lambda: worker.ready, "the worker to be ready")
        p = producer(bootstrap)
        p.send(names["items"], key=b"i4", value=json.dumps(
            {"item_id": "i4", "features": {"vector": [1.0] * 30_000}}).encode())  # 180 kB
        p.send(names["items"], key=b"i5", value=json.dumps(
            {"item_id": "i5", "features": {"categories": "shoes"}}).encode())
        p.send(names["items"], key=b"i6", value=json.dumps({"item_id": "i6"}).encode())
        p.flush()
        p.close()
        dead = consume_until(bootstrap, names["dlq"], lambda records: len(records) >= 3)
        wait_for(lambda: metric(worker, "streamrec_items_available") == 1, "i6 applied")
        send_events(bootstrap, names["events"], ["after"], 1, seed=0)
        recommendations(bootstrap, names["recs"], ["after"])  # still serving
    assert handle.failure == []
    got = {r.key: dict(r.headers) for r in dead}
    assert {key: h[HEADER_REASON] for key, h in got.items()} == {
        b"i3": b"bad_available", b"i4": b"oversize", b"i5": b"bad_features"}
    assert all(h[HEADER_SOURCE].decode().startswith(names["items"] + "/") for h in got.values())


def test_a_hot_swapped_model_keeps_the_retired_items_out_by_id(
    kafka_bootstrap: str, names: dict[str, str], tmp_path: Path,
) -> None:
    """v2 knows 60 items in other rows; items retired before the load, one of them
    unknown to v1, and one retired while v2 loads stay out of its recommendations."""
    from streamrec.encoder import repository
    from tests.integration.conftest import write_checkpoint

    bootstrap = kafka_bootstrap
    repo = tmp_path / "models"
    repository.publish(repo, write_checkpoint(repository.incoming(repo), 8), "v1")
    publish_items(bootstrap, names["items"], [
        ("i5", {"item_id": "i5", "available": False}), ("i7", None),
        ("i50", {"item_id": "i50", "available": False})])  # v1 does not know it, v2 does
    worker = Worker(config(bootstrap, repo, names, model_check_s=3600))
    with running(worker) as handle:
        wait_for(lambda: worker.ready, "the worker to be ready")
        v2 = repository.publish(repo, write_checkpoint(repository.incoming(repo), 8,
                                                       items=60, seed=1), "v2")
        worker.request_reload()
        publish_items(bootstrap, names["items"], [("i9", None)])
        wait_for(lambda: worker.models.serving.checkpoint.path == v2
                 and metric(worker, "streamrec_items_retired") == 4, "v2 and i9", 120)
        read_at = now_ms()
        users = [f"w{n}" for n in range(80)]
        send_events(bootstrap, names["events"], users, 3, seed=2)
        recs = [r for r in recommendations(bootstrap, names["recs"], users)
                if r["event_ts"] >= read_at]
    assert handle.failure == []
    version = {r["model_version"] for r in recs}
    assert len(version) == 1
    found = items_of(recs)
    assert not {"i5", "i7", "i9", "i50"} & set(found), found
    assert len(found) > 30  # the check above had most of the catalogue to catch


def test_a_worker_that_fails_to_start_leaves_no_items_reader_behind(
    kafka_bootstrap: str, tiny_checkpoint: Path, names: dict[str, str],
) -> None:
    """The items thread starts before the metrics endpoint binds; a bind that fails
    (the port taken) still closes it. Left running, its consumer outlived the worker
    and, once its broker was gone, logged into later tests (seen in CI)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = dataclasses.replace(config(kafka_bootstrap, tiny_checkpoint, names),
                                  metrics_port=taken.getsockname()[1])
        worker = Worker(cfg)
        with pytest.raises(OSError, match="in use"):
            worker.run()
    assert worker.items.feed._thread.ident is not None  # it had started
    assert not worker.items.feed._thread.is_alive()
