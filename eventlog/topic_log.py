"""Read an events topic back as an interaction log, for training on what was served.

Reads every partition from its beginning to the end offset it had when the read
started (so a live topic still gives a finite log), validates each record with the
worker's own event contract (old event times included: a backfilled 1990s log is as
valid as a live one), keeps the event types the worker would keep (`event_types`,
the same allow-list as `streamrec worker --event-types`), and groups the valid ones
per user in event-time order. Invalid records and events of other types are counted
in the load report and logged, never fatal (invalid ones are, when `strict`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

from streamrec.encoder.data import Interactions, with_skipped
from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.formats import SkipTally
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import read_to_end
from streamrec.worker.validate import Event, EventFilter, Limits, Skipped, validate_event

logger = logging.getLogger(__name__)


def read_topic_interactions(
    bootstrap: str, topic: str, *, limits: Limits | None = None, strict: bool = False,
    timeout_s: float = 300.0, security: KafkaSecurity | None = None,
    event_types: frozenset[str] | None = None, since_ms: int | None = None,
) -> Interactions:
    """All valid events of `topic` as `Interactions` (ids as in the events, ts-ordered).

    With `event_types`, only events of those types (see `EventFilter`); the others
    are counted in `report.skipped`, invalid records in `report.bad_lines`. With
    `since_ms`, only records whose Kafka timestamp is at or after it (a retrain on
    the last days of events: `streamrec train --from-topic events --since 7d`).
    """
    limits = limits or Limits()
    event_filter = EventFilter(event_types)
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    rejected: Counter[str] = Counter()
    skipped = SkipTally()
    records = read_to_end(bootstrap, topic, client_id="streamrec-topic-log", security=security,
                          timeout_s=timeout_s, since_ms=since_ms)
    for rec in records:
        result = validate_event(rec.key, rec.value, rec.timestamp, limits,
                                event_filter=event_filter)
        if isinstance(result, Event):
            users.append(result.user_id)
            items.append(result.item_id)
            times.append(result.ts)
        elif isinstance(result, Skipped):
            skipped.add(result.type)
        elif strict:
            records.close()
            raise DataFormatError(
                f"{topic}/{rec.partition}/{rec.offset}: {result.reason}: {result.detail}")
        else:
            rejected[result.reason] += 1
    if rejected:
        logger.warning("skipped %d invalid records of %s: %s", sum(rejected.values()), topic,
                       dict(rejected))
    if skipped.total:
        logger.info("skipped %d events of %s of types outside --event-types: %s",
                    skipped.total, topic, skipped.by_type)
    logger.info("read %d events of %d users from topic %s", len(users), len(set(users)), topic)
    data = Interactions.from_pairs(users, items, times, source=f"kafka:{topic}")
    bad = rejected.total()
    report = dataclasses.replace(data.report, format="topic",
                                 lines=len(users) + bad + skipped.total, bad_lines=bad)
    data = dataclasses.replace(data, report=report)
    return with_skipped(data, skipped) if skipped.total else data
