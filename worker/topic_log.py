"""Read an events topic back as an interaction log, for training on what was served.

Reads every partition from its beginning to the end offset it had when the read
started (so a live topic still gives a finite log), validates each record with the
worker's own event contract, and groups the valid ones per user in event-time order.
Invalid records are counted and logged, never fatal (unless `strict`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from kafka import TopicPartition

from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import DataFormatError
from streamrec.worker.errors import KafkaUnavailableError
from streamrec.worker.kafka_clients import make_consumer
from streamrec.worker.validate import Event, Limits, validate_event

logger = logging.getLogger(__name__)


def read_topic_interactions(
    bootstrap: str, topic: str, *, limits: Limits | None = None, strict: bool = False,
    timeout_s: float = 300.0,
) -> Interactions:
    """All valid events of `topic` as `Interactions` (ids as in the events, ts-ordered)."""
    limits = limits or Limits()
    consumer = make_consumer(bootstrap, group_id=None, client_id="streamrec-topic-log")
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise KafkaUnavailableError(f"topic {topic!r} does not exist at {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        users: list[str] = []
        items: list[str] = []
        times: list[int] = []
        rejected: Counter[str] = Counter()
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        while remaining:
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"reading {topic!r} took longer than {timeout_s:.0f}s; "
                    f"{len(remaining)} partitions unfinished")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        break
                    result = validate_event(rec.key, rec.value, rec.timestamp, limits)
                    if isinstance(result, Event):
                        users.append(result.user_id)
                        items.append(result.item_id)
                        times.append(result.ts)
                    elif strict:
                        raise DataFormatError(
                            f"{topic}/{tp.partition}/{rec.offset}: {result.reason}: "
                            f"{result.detail}")
                    else:
                        rejected[result.reason] += 1
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()
    if rejected:
        logger.warning("skipped %d invalid records of %s: %s", sum(rejected.values()), topic,
                       dict(rejected))
    logger.info("read %d events of %d users from topic %s", len(users), len(set(users)), topic)
    return Interactions.from_pairs(users, items, times, source=f"kafka:{topic}")
