"""The walking skeleton against the real broker: events in, recommendations out.

A separate producer sends valid events for many users plus one bad record of every
kind; the worker runs; every user gets a recommendation without their own history
items, the dead-letter topic holds exactly the bad records with their reasons, and
the /metrics counters agree with what was sent.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.publish import HEADER_REASON, HEADER_SOURCE
from streamrec.worker.validate import INVALID_REASONS
from tests.integration.helpers import (
    assert_recommendations_avoid_history,
    committed_offsets,
    consume_until,
    end_offsets,
    event,
    latest_by_user,
    metric_sum,
    producer,
    scrape,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

TWO_MB = 2 * 1024 * 1024


def bad_records() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected reason): one of every kind the contract rejects."""
    return [
        (b"u1", b"this is not json", "not_json"),
        (b"u1", b"[1, 2, 3]", "not_object"),
        (b"u1", json.dumps({"item_id": "i1"}).encode(), "missing_user_id"),
        (b"u1", json.dumps({"user_id": "u1"}).encode(), "missing_item_id"),
        (b"u1", json.dumps({"user_id": ["u1"], "item_id": "i1"}).encode(), "bad_user_id"),
        (b"u1", json.dumps({"user_id": "u1", "item_id": 1.5}).encode(), "bad_item_id"),
        (b"u1", json.dumps({"user_id": "u1", "item_id": "i1", "ts": "now"}).encode(), "bad_ts"),
        (b"u1", b"{" + b" " * TWO_MB + b"}", "oversize"),
        (b"u1", b"", "empty"),
        (None, json.dumps({"user_id": "u1", "item_id": "i1"}).encode(), "missing_key"),
        (b"u2", json.dumps({"user_id": "u1", "item_id": "i1"}).encode(), "key_mismatch"),
        (b"u1", b'{"user_id": "u1", "item_id": "\xff"}', "bad_encoding"),
        (b"u1", json.dumps({"user_id": "u1", "item_id": "i1", "type": 3}).encode(), "bad_type"),
    ]


def worker_config(bootstrap: str, model_dir: Path, names: dict[str, str]) -> WorkerConfig:
    return WorkerConfig(
        model_dir=model_dir, bootstrap=bootstrap, events_topic=names["events"],
        recommendations_topic=names["recs"], dead_letter_topic=names["dlq"],
        group_id=names["group"], metrics_port=0, metrics_host="127.0.0.1", max_batch=32,
        max_wait_ms=20, k=5, device="cpu",
    )


def test_events_to_recommendations_with_dead_letters_and_metrics(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str],
) -> None:
    known = [f"i{n}" for n in range(1, 41)]
    history: dict[str, list[str]] = defaultdict(list)
    sends: list[tuple[bytes | None, bytes | None]] = []
    for step in range(6):  # 6 events per user: within the model's history length
        for u in range(40):
            user = f"user-{u}"
            item = known[(u * 7 + step * 3) % len(known)]
            history[user].append(item)
            sends.append(event(user, item))
    sends.append(event("cold-user", "never-seen-item"))  # cold start: popular items
    history["cold-user"] = []
    bad = bad_records()
    p = producer(kafka_bootstrap)
    for key, value in sends:
        p.send(topics["events"], key=key, value=value)
    for key, value, _ in bad:
        p.send(topics["events"], key=key, value=value)
    p.flush()
    p.close()

    worker = Worker(worker_config(kafka_bootstrap, tiny_checkpoint, topics))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        latest: dict[str, dict] = {}

        def all_users_served(records: list) -> bool:
            return latest_by_user(records, latest) >= set(history) and not worker.batcher
        consume_until(kafka_bootstrap, topics["recs"], all_users_served)
        dlq = consume_until(kafka_bootstrap, topics["dlq"], lambda rs: len(rs) >= len(bad))
        samples = scrape(worker.metrics_port)
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()

    assert_recommendations_avoid_history(latest, history, k=5)
    for rec in latest.values():
        assert rec["model_version"] == worker.recommender.model_version
        assert rec["produced_ts"] >= rec["event_ts"]
    assert latest["cold-user"]["explanation"]["strategy"] == "popular"
    attended = latest["user-0"]["explanation"]
    assert attended["strategy"] == "attention"
    assert {h["item_id"] for h in attended["history"]} <= set(history["user-0"])

    assert len(dlq) == len(bad)
    got = sorted((dict(r.headers)[HEADER_REASON].decode(), r.value) for r in dlq)
    assert got == sorted((reason, value) for _, value, reason in bad)
    assert all(dict(r.headers)[HEADER_SOURCE].decode().startswith(topics["events"]) for r in dlq)

    n_valid, n_bad = len(sends), len(bad)
    assert metric_sum(samples, "streamrec_events_valid_total") == n_valid
    assert metric_sum(samples, "streamrec_events_invalid_total") == n_bad
    assert metric_sum(samples, "streamrec_events_consumed_total") == n_valid + n_bad
    assert metric_sum(samples, "streamrec_dead_letters_published_total") == n_bad
    assert metric_sum(samples, "streamrec_recommendations_published_total") >= len(history)
    assert {reason for _, _, reason in bad} == set(INVALID_REASONS)  # one of every kind
    for reason in INVALID_REASONS:
        assert samples[f'streamrec_events_invalid_total{{reason="{reason}"}}'] == 1, reason
    assert metric_sum(samples, "streamrec_event_to_recommendation_seconds_count") >= len(history)
    assert samples["streamrec_users_in_memory"] == len(history)
    assert 0 < samples["streamrec_poll_gap_max_seconds"] < 60  # the loop worked between polls

    # Everything consumed is committed after the graceful stop.
    assert committed_offsets(kafka_bootstrap, topics["group"], topics["events"]) == end_offsets(
        kafka_bootstrap, topics["events"])
