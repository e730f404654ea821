"""Read an events topic back as an interaction log, for training on what was served.

Reads every partition from its beginning to the end offset it had when the read
started (so a live topic still gives a finite log), validates each record with the
worker's own event contract, and groups the valid ones per user in event-time order.
Invalid records are counted and logged, never fatal (unless `strict`).
"""

from __future__ import annotations

import logging
from collections import Counter

from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import DataFormatError
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import read_to_end
from streamrec.worker.validate import Event, Limits, validate_event

logger = logging.getLogger(__name__)


def read_topic_interactions(
    bootstrap: str, topic: str, *, limits: Limits | None = None, strict: bool = False,
    timeout_s: float = 300.0, security: KafkaSecurity | None = None,
) -> Interactions:
    """All valid events of `topic` as `Interactions` (ids as in the events, ts-ordered)."""
    limits = limits or Limits()
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    rejected: Counter[str] = Counter()
    records = read_to_end(bootstrap, topic, client_id="streamrec-topic-log", security=security,
                          timeout_s=timeout_s)
    for rec in records:
        result = validate_event(rec.key, rec.value, rec.timestamp, limits)
        if isinstance(result, Event):
            users.append(result.user_id)
            items.append(result.item_id)
            times.append(result.ts)
        elif strict:
            records.close()
            raise DataFormatError(
                f"{topic}/{rec.partition}/{rec.offset}: {result.reason}: {result.detail}")
        else:
            rejected[result.reason] += 1
    if rejected:
        logger.warning("skipped %d invalid records of %s: %s", sum(rejected.values()), topic,
                       dict(rejected))
    logger.info("read %d events of %d users from topic %s", len(users), len(set(users)), topic)
    return Interactions.from_pairs(users, items, times, source=f"kafka:{topic}")
