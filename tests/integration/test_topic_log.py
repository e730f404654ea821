"""`--from-topic`: an events topic read back as a training log, bad records skipped."""

from __future__ import annotations

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
