"""Ingest: a partition's polled records through validate and histories into the batcher.

The first three arrows of the data flow, for one partition's records at a time:
each record is decoded and checked against the event contract (`validate.py`; a bad
one goes to the dead-letter topic with its reason, an event of a type outside
`--event-types` is counted and skipped), the valid events are applied to their
users' histories in one vectorised call (`state/`), and each user with a new event
waits in the batcher for its recommendation. Replayed events (at or below a user's
applied offset) change no history; whether they are answered again depends on the
output guarantee (see `Ingest.apply`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from streamrec.kafka_io.port import Record, TopicPartition
from streamrec.worker.batcher import MicroBatcher
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.publish import Publisher
from streamrec.worker.state.durable import DurableHistories
from streamrec.worker.validate import (
    Event,
    EventFilter,
    Limits,
    Skipped,
    SkippedTypeLabels,
    now_ms,
    validate_event,
)

logger = logging.getLogger(__name__)


class Ingest:
    """Validates records, applies the valid events to histories, queues their users."""

    def __init__(
        self, state: DurableHistories, batcher: MicroBatcher, publisher: Publisher,
        metrics: WorkerMetrics, *, limits: Limits, event_types: frozenset[str] | None,
        exactly_once: bool,
    ) -> None:
        self.state = state
        self.batcher = batcher
        self.publisher = publisher  # for dead letters
        self.metrics = metrics
        self.limits = limits
        self.exactly_once = exactly_once
        self._event_filter = EventFilter(event_types)
        self._skip_label = SkippedTypeLabels()

    def apply(self, tp: TopicPartition, records: Sequence[Record], model_version: str) -> None:
        """Validate a partition's records, update histories, queue users for a batch.

        `model_version` (the serving model's) labels the live quality sample: each new
        event is judged against the last recommendation its user was sent.
        """
        start = time.perf_counter()
        self.metrics.events_consumed.labels(tp.topic).inc(len(records))
        valid, record_times = self._validate(tp, records)
        decoded = time.perf_counter()
        self.metrics.stage_seconds.labels("decode").observe(decoded - start)
        if not valid:
            return
        m = self.metrics
        m.events_valid.inc(len(valid))
        users = [e.user_id for e, _ in valid]
        ts = np.fromiter((e.ts for e, _ in valid), dtype=np.int64, count=len(valid))
        offsets = np.fromiter((o for _, o in valid), dtype=np.int64, count=len(valid))
        applied = self.state.apply(tp.partition, users, [e.item_id for e, _ in valid], ts, offsets)
        fresh = applied.fresh
        m.unknown_items.inc(applied.unknown)
        m.unknown_items_not_kept.inc(applied.not_kept)
        m.events_replayed.inc(int((~fresh).sum()))
        if applied.judged:
            m.observe_quality(model_version, applied.judged, applied.hits, applied.ndcg)
        # A replayed event's state is in the changelog, so its recommendation went
        # out with it (`take_changes`). With exactly-once they committed together:
        # it is not answered again. Otherwise whether the recommendation reached the
        # broker before the crash is unknown, and output is at-least-once.
        since = time.monotonic()
        add = self.batcher.add
        answer = fresh.tolist() if self.exactly_once else [True] * len(valid)
        for (event, offset), record_ts, due in zip(valid, record_times, answer, strict=True):
            if due:
                add(tp.partition, event.user_id, offset, event.ts, since, record_ts)
        m.stage_seconds.labels("histories").observe(time.perf_counter() - decoded)

    def _validate(self, tp: TopicPartition, records: Sequence[Record],
                  ) -> tuple[list[tuple[Event, int]], list[int]]:
        """The valid events with their offsets, and their records' timestamps; bad
        records go to the dead-letter topic, skipped types are counted."""
        valid: list[tuple[Event, int]] = []
        record_times: list[int] = []
        limits, event_filter, now = self.limits, self._event_filter, now_ms()
        for rec in records:
            result = validate_event(rec.key, rec.value, rec.timestamp, limits,
                                    event_filter=event_filter, now=now)
            if isinstance(result, Event):
                valid.append((result, rec.offset))
                record_times.append(rec.timestamp)
            elif isinstance(result, Skipped):
                self.metrics.events_skipped.labels(self._skip_label(result.type)).inc()
            else:
                self.metrics.events_invalid.labels(result.reason).inc()
                self.publisher.send_dead_letter(
                    rec.key, rec.value, result, f"{tp.topic}/{tp.partition}/{rec.offset}")
        return valid, record_times
