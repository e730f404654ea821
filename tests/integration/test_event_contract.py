"""Event times and event types through a real worker on the real broker.

Issue 10, item 1: a backfill of a 1990s log keeps its own event times (none of its
events may be dead-lettered), while unit mistakes still are, with a detail that says
how to fix them. Item 5: with `event_types`, events of other types are counted and
skipped (no dead letter, no history change, no recommendation), and their offsets
are committed like any other.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.publish import HEADER_DETAIL, HEADER_REASON
from tests.integration.durability import final_state, wait_drained
from tests.integration.helpers import (
    consume_until,
    end_offsets,
    latest_by_user,
    metric_sum,
    producer,
    running,
    scrape,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

MOVIELENS_1997 = 881_250_949_000  # the first rating of MovieLens 100k, in epoch ms


def config(checkpoint: Path, bootstrap: str, topics: dict[str, str],
           **extra: Any) -> WorkerConfig:
    return WorkerConfig(
        model_dir=checkpoint, bootstrap=bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=0, metrics_host="127.0.0.1", max_batch=16,
        max_wait_ms=20, k=5, device="cpu", commit_interval_ms=200, **extra)


def send(bootstrap: str, topic: str, docs: list[dict[str, Any]]) -> None:
    """Each doc as an event keyed by its user id; record timestamps are now."""
    p = producer(bootstrap)
    for d in docs:
        p.send(topic, key=str(d["user_id"]).encode(), value=json.dumps(d).encode())
    p.flush()
    p.close()


def test_a_1997_log_is_served_with_its_own_times_and_unit_mistakes_are_dead_lettered(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str],
) -> None:
    old = [{"user_id": f"fan-{u}", "item_id": f"i{u + k + 1}", "ts": MOVIELENS_1997 + 1000 * k}
           for k in range(3) for u in range(8)]
    now = int(time.time() * 1000)
    mistakes = {  # user -> (ts, phrase the dead letter's detail must contain)
        "secs": (MOVIELENS_1997 // 1000, "looks like seconds: multiply by 1000"),
        "micros": (MOVIELENS_1997 * 1000, "looks like microseconds: divide by 1000"),
        "nanos": (now * 1_000_000, "looks like nanoseconds: divide by 1000000"),
        "later": (now + 3 * 86_400_000, "in the future"),
    }
    bad = [{"user_id": u, "item_id": "i1", "ts": ts} for u, (ts, _) in mistakes.items()]
    send(kafka_bootstrap, topics["events"], old + bad)

    latest: dict[str, dict[str, Any]] = {}
    with running(Worker(config(tiny_checkpoint, kafka_bootstrap, topics))):
        consume_until(kafka_bootstrap, topics["recs"],
                      lambda rs: len(latest_by_user(rs, latest)) >= 8, timeout_s=90)
        dlq = consume_until(kafka_bootstrap, topics["dlq"], lambda rs: len(rs) >= 4,
                            timeout_s=60)
        wait_drained(kafka_bootstrap, topics["group"], topics["events"], timeout_s=60)

    assert {u: d["event_ts"] for u, d in latest.items()} == {
        f"fan-{u}": MOVIELENS_1997 + 2000 for u in range(8)}
    got = {r.key.decode(): (dict(r.headers)[HEADER_REASON].decode(),
                            dict(r.headers)[HEADER_DETAIL].decode()) for r in dlq}
    assert set(got) == set(mistakes)
    for user, (reason, detail) in got.items():
        assert reason == "bad_ts"
        assert mistakes[user][1] in detail, detail
    assert sum(end_offsets(kafka_bootstrap, topics["dlq"]).values()) == 4
    state = final_state(kafka_bootstrap, topics["group"], partitions=3)
    assert {u: state[u].ts for u in state} == {
        f"fan-{u}": (MOVIELENS_1997, MOVIELENS_1997 + 1000, MOVIELENS_1997 + 2000)
        for u in range(8)}


def test_events_of_other_types_are_counted_and_skipped_not_dead_lettered(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str],
) -> None:
    docs: list[dict[str, Any]] = []
    for u in range(6):  # buyers: view, purchase, view, purchase
        for k, kind in enumerate(["view", "purchase", "view", "purchase"]):
            docs.append({"user_id": f"buyer-{u}", "item_id": f"i{k + 1}", "type": kind})
    docs += [{"user_id": f"viewer-{u}", "item_id": "i9", "type": "view"} for u in range(6)]
    docs += [{"user_id": "plain", "item_id": "i9"}, {"user_id": "clicker", "item_id": "i9",
                                                     "type": "click"}]
    send(kafka_bootstrap, topics["events"], docs)

    worker = Worker(config(tiny_checkpoint, kafka_bootstrap, topics,
                           event_types=frozenset({"purchase"})))
    latest: dict[str, dict[str, Any]] = {}
    with running(worker):
        consume_until(kafka_bootstrap, topics["recs"],
                      lambda rs: len(latest_by_user(rs, latest)) >= 6, timeout_s=90)
        wait_drained(kafka_bootstrap, topics["group"], topics["events"], timeout_s=60)
        time.sleep(1.0)  # a recommendation for a skipped user would have come by now
        recs = consume_until(kafka_bootstrap, topics["recs"], lambda rs: False, timeout_s=3)
        samples = scrape(worker.metrics_port)

    assert {r.key.decode() for r in recs} == {f"buyer-{u}" for u in range(6)}
    state = final_state(kafka_bootstrap, topics["group"], partitions=3)
    assert {u: state[u].items for u in state} == {f"buyer-{u}": ("i2", "i4") for u in range(6)}
    assert sum(end_offsets(kafka_bootstrap, topics["dlq"]).values()) == 0
    assert metric_sum(samples, "streamrec_events_consumed_total") == len(docs)
    assert metric_sum(samples, "streamrec_events_invalid_total") == 0
    assert samples['streamrec_events_skipped_total{type="view"}'] == 12 + 6
    assert samples['streamrec_events_skipped_total{type="untyped"}'] == 1
    assert samples['streamrec_events_skipped_total{type="click"}'] == 1
    assert metric_sum(samples, "streamrec_events_valid_total") == 12
