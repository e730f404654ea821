"""Live quality from the topics: each event judged against the last recommendation before it.

The worker exports the same figures as it runs (`streamrec_online_*_total`). This
computes them afterwards from what Kafka holds, for any window and without the
worker's memory: read the events topic and the recommendations topic (records whose
Kafka timestamp is at or after `since_ms`), and for every valid event of a user find
the latest recommendation to that user that answers an earlier event (its `event_ts`
below the event's `ts`). The event is a hit at rank r when its item is r-th in that
recommendation's `items`; NDCG counts 1 / log2(r + 2). Events of users with no such
recommendation are not judged. Figures are per `model_version` of the recommendation.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import read_to_end
from streamrec.worker.validate import Event, EventFilter, Limits, validate_event

logger = logging.getLogger(__name__)


@dataclass
class Quality:
    """Judged events, hits and summed NDCG of one model version."""

    judged: int = 0
    hits: int = 0
    ndcg: float = 0.0
    k: int = 0  # the longest recommendation seen (the worker's --k)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.judged if self.judged else float("nan")

    @property
    def mean_ndcg(self) -> float:
        return self.ndcg / self.judged if self.judged else float("nan")


@dataclass
class _Sent:
    """One user's recommendations, ordered by the event time they answer."""

    event_ts: list[int] = field(default_factory=list)
    items: list[list[str]] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)


def online_quality(
    bootstrap: str, events_topic: str, recommendations_topic: str, *, since_ms: int = 0,
    security: KafkaSecurity | None = None, event_types: frozenset[str] | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Quality]:
    """Prequential hit rate and NDCG per model version, from the two topics."""
    sent: dict[str, _Sent] = defaultdict(_Sent)
    recs = 0
    for rec in read_to_end(bootstrap, recommendations_topic, client_id="streamrec-online-eval",
                           security=security, timeout_s=timeout_s):
        if rec.timestamp < since_ms or rec.value is None:
            continue
        try:
            doc = orjson.loads(rec.value)
            user, event_ts = str(doc["user_id"]), int(doc["event_ts"])
            items = [str(entry["item_id"]) for entry in doc["items"]]
            version = str(doc.get("model_version", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not a recommendation record of this contract
        sent[user].event_ts.append(event_ts)
        sent[user].items.append(items)
        sent[user].versions.append(version)
        recs += 1
    for history in sent.values():  # by answered event time; stable for equal times
        order = sorted(range(len(history.event_ts)), key=history.event_ts.__getitem__)
        history.event_ts = [history.event_ts[i] for i in order]
        history.items = [history.items[i] for i in order]
        history.versions = [history.versions[i] for i in order]

    quality: dict[str, Quality] = defaultdict(Quality)
    limits, event_filter = Limits(), EventFilter(event_types)
    events = 0
    for rec in read_to_end(bootstrap, events_topic, client_id="streamrec-online-eval",
                           security=security, timeout_s=timeout_s):
        if rec.timestamp < since_ms:
            continue
        event = validate_event(rec.key, rec.value, rec.timestamp, limits,
                               event_filter=event_filter)
        if not isinstance(event, Event):
            continue
        events += 1
        history = sent.get(event.user_id)
        if history is None:
            continue
        at = bisect.bisect_left(history.event_ts, event.ts) - 1  # latest answering an earlier
        if at < 0:
            continue
        q = quality[history.versions[at]]
        items = history.items[at]
        q.judged += 1
        q.k = max(q.k, len(items))
        if event.item_id in items:
            q.hits += 1
            q.ndcg += 1.0 / math.log2(items.index(event.item_id) + 2)
    logger.info("online quality: %d events, %d recommendations read", events, recs)
    return dict(quality)
