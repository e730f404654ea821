"""Hot model reload: a new version published in the model repository is served
between two batches under load: no event lost or applied twice, no rebalance, and a
corrupt version is refused while the old model keeps serving. The checks are forced
by `streamrec reload` (POST /reload) and by `request_reload` (what SIGHUP calls)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from streamrec.cli.main import build_parser
from streamrec.encoder import repository
from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from tests.integration.conftest import write_checkpoint
from tests.integration.durability import (
    SteadyProducer,
    assert_state_matches,
    final_state,
    wait_drained,
)
from tests.integration.helpers import (
    consume_until,
    end_offsets,
    event,
    latest_by_user,
    producer,
    running,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]

MAX_LEN = 64
T0 = 1_700_000_000_000  # event times (epoch ms)


def wait_for(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_published_version_is_swapped_in_under_load_and_a_corrupt_one_refused(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path,
) -> None:
    repo = tmp_path / "models"
    v1 = repository.publish(repo, write_checkpoint(repository.incoming(repo), MAX_LEN),
                            "v1")
    worker = Worker(WorkerConfig(
        model_dir=repo, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=0, metrics_host="127.0.0.1", max_batch=16,
        device="cpu", model_check_s=3600, commit_interval_ms=100))
    version1 = worker.recommender.model_version
    assignments: list[Any] = []
    on_assigned = worker._on_assigned
    worker._on_assigned = lambda tps: (assignments.append(tps), on_assigned(tps))[1]
    producer = SteadyProducer(kafka_bootstrap, topics["events"], total=40 * 30, users=40,
                              rate=200)
    with running(worker):
        producer.start()
        wait_for(lambda: worker.metrics.events_valid._value.get() > 300, "events flowing")
        joined = len(assignments)  # a startup rebalance may come first: not the swap's
        # A larger vocabulary (i1..i60), other weights: published while events flow.
        v2 = repository.publish(
            repo, write_checkpoint(repository.incoming(repo), MAX_LEN, items=60, seed=1), "v2")
        time.sleep(1.0)
        assert worker.recommender.checkpoint.path == v1  # next scheduled check: in an hour
        reload = build_parser().parse_args(
            ["reload", "--url", f"http://127.0.0.1:{worker.metrics_port}"])
        assert reload.handler(reload) == 0  # `streamrec reload`: POST /reload
        wait_for(lambda: worker.recommender.checkpoint.path == v2, "the swap to v2")
        version2 = worker.recommender.model_version
        # A half-written version (no weights, bad config) becomes current: refused.
        broken = repository.incoming(repo)
        (broken / "config.json").write_text("{not json")
        repository.publish(repo, broken, "v3")
        worker.request_reload()  # what SIGHUP calls
        wait_for(lambda: refused(worker) == 1, "the refusal of v3")
        # Asked again with v3 still current: it was refused once and is not tried again.
        worker.request_reload()
        time.sleep(1.0)  # a check is at most one poll (0.5 s) away; a load of v3 fails fast
        producer.join(timeout=120)
        assert producer.error is None, producer.error
        wait_drained(kafka_bootstrap, topics["group"], topics["events"])
        assert len(assignments) == joined  # the swap did not make the worker rejoin its group
        assert worker.recommender.checkpoint.path == v2  # v2 still serving
        assert worker.metrics.model_reloads.labels("ok")._value.get() == 1
        assert refused(worker) == 1
        info = {s.labels.get("version") for f in worker.metrics.registry.collect()
                if f.name == "streamrec_model" for s in f.samples}
        assert info == {version2}
    assert v1 != v2
    assert version1 != version2
    # Every event applied exactly once, in order, across the swap.
    assert_state_matches(final_state(kafka_bootstrap, topics["group"], partitions=3),
                         producer.expected(MAX_LEN))
    written = sum(end_offsets(kafka_bootstrap, topics["recs"]).values())
    recs = consume_until(kafka_bootstrap, topics["recs"], lambda rs: len(rs) >= written,
                         timeout_s=30)
    assert len(recs) == written > 0  # all of them, or the order check below proves nothing
    by_partition: dict[int, list[str]] = {}
    for r in recs:
        by_partition.setdefault(r.partition, []).append(json.loads(r.value)["model_version"])
    assert sorted(by_partition) == [0, 1, 2]
    for versions in by_partition.values():  # in each partition's order: v1, then only v2
        first_v2 = versions.index(version2)
        assert set(versions[:first_v2]) == {version1}
        assert set(versions[first_v2:]) == {version2}


def refused(worker: Worker) -> float:
    """streamrec_model_reloads_total{result="refused"}: versions refused so far."""
    return worker.metrics.model_reloads.labels("refused")._value.get()


def held(worker: Worker) -> float:
    """streamrec_unknown_items_held as a scrape reads it (a callback gauge)."""
    return worker.metrics.unknown_items_held.collect()[0].samples[0].value


def test_items_unknown_to_the_serving_model_are_kept_and_count_after_a_swap(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path,
) -> None:
    repo = tmp_path / "models"
    repository.publish(repo, write_checkpoint(repository.incoming(repo), 8), "v1")  # i1..i40
    worker = Worker(WorkerConfig(
        model_dir=repo, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=0, metrics_host="127.0.0.1", max_batch=16,
        device="cpu", model_check_s=3600, commit_interval_ms=100, explain_top=8))
    send = producer(kafka_bootstrap)
    seen: dict[str, dict[str, Any]] = {}

    def produce(item: str, ts: int) -> None:
        key, value = event("u", item, ts)
        send.send(topics["events"], key=key, value=value)
        send.flush()

    def recommendation_after(ts: int) -> dict[str, Any]:
        consume_until(kafka_bootstrap, topics["recs"],
                      lambda rs: latest_by_user(rs, seen) and seen.get("u", {}).get("event_ts")
                      == ts)
        doc = seen["u"]
        assert doc["event_ts"] == ts, doc
        return doc

    with running(worker):
        for ts, item in enumerate(["i41", "i1", "i42", "i2"], start=T0):  # i41, i42: new
            produce(item, ts)
        before = recommendation_after(T0 + 3)
        # v1 reads only the items it knows; the history keeps all four.
        assert {h["item_id"] for h in before["explanation"]["history"]} == {"i1", "i2"}
        wait_for(lambda: worker.metrics.unknown_items._value.get() == 2, "unknown items")
        assert held(worker) == 2
        # v2 knows i1..i60: the items v1 lacked count from the next batch on.
        repository.publish(
            repo, write_checkpoint(repository.incoming(repo), 8, items=60, seed=1), "v2")
        worker.request_reload()
        wait_for(lambda: worker.metrics.model_reloads.labels("ok")._value.get() == 1, "swap")
        produce("i3", T0 + 4)
        after = recommendation_after(T0 + 4)
        assert {h["item_id"] for h in after["explanation"]["history"]} == {
            "i41", "i1", "i42", "i2", "i3"}
        # Items of the history are not recommended.
        assert not {"i41", "i42"} & {i["item_id"] for i in after["items"]}
        assert held(worker) == 0  # v2 knows every item seen
    send.close()
    state = final_state(kafka_bootstrap, topics["group"], partitions=3)
    assert state["u"].items == ("i41", "i1", "i42", "i2", "i3")
    # A worker serving v1 again restores the whole history: i41 and i42 are kept, masked.
    again = Worker(dataclasses.replace(worker.config, model_dir=repo / "v1", metrics_port=-1))
    with running(again):
        wait_for(lambda: again.state.num_users() == 1, "the restore")
        store = next(s for _, s in again.state.stores() if "u" in s)
        assert again.state.items.external(store.history("u")[0]) == [
            "i41", "i1", "i42", "i2", "i3"]
        assert again.state.items.extra == 2
