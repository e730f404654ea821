"""`--from-topic`: an events topic read back as a training log, bad records skipped."""

from __future__ import annotations

import json

import pytest

from streamrec.eventlog.topic_log import read_topic_interactions
from tests.conftest import NewTopicFactory
from tests.integration.helpers import event, producer

pytestmark = pytest.mark.integration


def test_reads_valid_events_per_user_in_event_time_order(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=2, prefix="events")
    p = producer(kafka_bootstrap)
    base = 1_700_000_000_000
    sent = [("a", "x", base + 3), ("b", "y", base + 1), ("a", "z", base + 1),
            ("a", "w", base + 5), ("b", "x", base + 2)]
    for user, item, ts in sent:
        key, value = event(user, item, ts)
        p.send(topic, key=key, value=value)
    p.send(topic, key=b"a", value=b"not json")
    p.send(topic, key=None, value=b'{"user_id": "c", "item_id": "q"}')
    p.flush()
    p.close()

    data = read_topic_interactions(kafka_bootstrap, topic)

    got = {u: data.vocab.external(s) for u, s in zip(data.users, data.sequences, strict=True)}
    assert got == {"a": ["z", "x", "w"], "b": ["y", "x"]}
    assert data.num_interactions == len(sent)


def test_missing_topic_is_a_clear_error(kafka_bootstrap: str) -> None:
    from streamrec.kafka_io.errors import KafkaUnavailableError

    with pytest.raises(KafkaUnavailableError, match="does not exist"):
        read_topic_interactions(kafka_bootstrap, "no-such-topic-here", timeout_s=10)


def test_old_event_times_and_the_type_allow_list_apply_to_topic_logs(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=2, prefix="events")
    p = producer(kafka_bootstrap)
    old = 881_250_949_000  # 1997: valid, in order, never dropped as bad_ts
    sent = [("a", "x", old + 2, "purchase"), ("a", "y", old + 1, "view"),
            ("a", "z", old, "purchase"), ("b", "x", old, None), ("b", "w", old + 9, "click")]
    for user, item, ts, kind in sent:
        doc = {"user_id": user, "item_id": item, "ts": ts} | ({"type": kind} if kind else {})
        p.send(topic, key=user.encode(), value=json.dumps(doc).encode())
    p.send(topic, key=b"a", value=b'{"user_id": "a", "item_id": "q", "ts": 881250949}')
    p.flush()
    p.close()

    everything = read_topic_interactions(kafka_bootstrap, topic)
    assert everything.num_interactions == 5
    assert everything.report.bad_lines == 1  # the ts in seconds

    data = read_topic_interactions(kafka_bootstrap, topic, event_types=frozenset({"purchase"}))
    got = {u: data.vocab.external(s) for u, s in zip(data.users, data.sequences, strict=True)}
    assert got == {"a": ["z", "x"]}
    assert (data.report.lines, data.report.bad_lines, data.report.skipped) == (6, 1, 3)
    assert dict(data.report.skipped_types) == {"view": 1, "untyped": 1, "click": 1}


def test_since_reads_only_records_from_that_time_on(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    """`--since` seeks each partition by record timestamp (the broker's time index)."""
    topic = new_topic(partitions=2)
    p = producer(kafka_bootstrap)
    base = 1_700_000_000_000
    for i in range(40):  # record timestamps base + i*1000; users spread over partitions
        key, value = event(f"u{i % 5}", f"i{i}", ts=base + i)
        p.send(topic, key=key, value=value, timestamp_ms=base + i * 1000)
    p.flush()
    p.close()
    data = read_topic_interactions(kafka_bootstrap, topic, since_ms=base + 30_000)
    items = sorted(int(i[1:]) for seq in data.sequences for i in data.vocab.external(seq))
    assert items == list(range(30, 40))
    assert read_topic_interactions(kafka_bootstrap, topic, since_ms=base + 10**9).report \
        .interactions == 0
