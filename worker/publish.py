"""Publishing: recommendations to their topic, rejected records to the dead-letter topic.

Sends are asynchronous; `flush` waits for every acknowledgement of the batch and
raises `PublishError` if any record was not acknowledged after the producer's
retries. The worker commits offsets only after a clean `flush`, so a record that
could not be published is never skipped silently: it is read again after restart.
Record formats (recommendation, dead letter): docs/CONTRACTS.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamrec.worker.batcher import BatchItem
from streamrec.worker.errors import PublishError
from streamrec.worker.validate import Invalid

if TYPE_CHECKING:  # the model stage's output type; importing it at run time loads torch
    from streamrec.worker.recommend import Recommendations

logger = logging.getLogger(__name__)

HEADER_REASON = "streamrec.reason"
HEADER_DETAIL = "streamrec.detail"
HEADER_SOURCE = "streamrec.source"  # "topic/partition/offset"
HEADER_TRUNCATED = "streamrec.original-bytes"


@dataclass
class Acked:
    """What one flush confirmed."""

    recommendations: Counter[str] = field(default_factory=Counter)  # by strategy
    dead_letters: int = 0
    changelog: list[tuple[int, str, int]] = field(default_factory=list)  # partition, user, offset
    event_ts: list[int] = field(default_factory=list)  # per recommendation


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


def recommendation_json(
    user_id: str, item_ids: list[str], scores: np.ndarray, popular: bool, model_version: str,
    event_ts: int, explanation: list[tuple[str, float]],
) -> bytes:
    """One recommendation record value, per the contract in docs/CONTRACTS.md."""
    doc: dict[str, Any] = {
        "user_id": user_id,
        "items": [
            {"item_id": i, "score": round(float(s), 6)}
            for i, s in zip(item_ids, scores, strict=True)
        ],
        "model_version": model_version,
        "event_ts": event_ts,
        "produced_ts": now_ms(),
        "explanation": {
            "strategy": "popular" if popular else "attention",
            "history": [{"item_id": i, "weight": round(w, 4)} for i, w in explanation],
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def top_attended(history: np.ndarray, attention: np.ndarray, n: int) -> list[tuple[int, float]]:
    """The `n` history rows with the most attention, best first, as (row, weight).

    An item seen several times in the history gets the sum of its positions' weights,
    so the explanation names items, not positions.
    """
    weights: dict[int, float] = {}
    for row, weight in zip(history.tolist(), attention.tolist(), strict=True):
        if row > 0 and weight > 0:
            weights[row] = weights.get(row, 0.0) + weight
    return sorted(weights.items(), key=lambda rw: -rw[1])[:n]


class Publisher:
    """Sends the batch's records and confirms them all at `flush`."""

    def __init__(
        self, producer: KafkaProducer, recommendations_topic: str, dead_letter_topic: str,
        dead_letter_max_bytes: int, transactional: bool = False,
    ) -> None:
        self.producer = producer
        self.recommendations_topic = recommendations_topic
        self.dead_letter_topic = dead_letter_topic
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.transactional = transactional
        self._in_transaction = False
        self._inflight: list[tuple[Any, str, int, str]] = []  # future, kind, event_ts, user
        if transactional:
            # Fences older instances with the same transactional id and aborts a
            # transaction a killed predecessor left open.
            producer.init_transactions()

    @property
    def inflight(self) -> int:
        """Records sent and not yet confirmed by a flush."""
        return len(self._inflight)

    def _send(self, topic: str, kind: str, event_ts: int = 0, user: str = "",
              **kwargs: Any) -> None:
        """Send one record (inside the open transaction, when transactional)."""
        if self.transactional and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True
        self._inflight.append((self.producer.send(topic, **kwargs), kind, event_ts, user))

    def send_recommendations(
        self, batch: list[BatchItem], recs: Recommendations, histories: np.ndarray,
        external_ids: list[str], model_version: str, explain_top: int,
    ) -> None:
        """Queue one record per batch row; `external_ids[row]` names item rows."""
        for i, item in enumerate(batch):
            valid = recs.rows[i] > 0
            ids = [external_ids[r] for r in recs.rows[i][valid]]
            explanation = [
                (external_ids[r], w)
                for r, w in top_attended(histories[i], recs.attention[i], explain_top)
            ]
            popular = bool(recs.popular[i])
            value = recommendation_json(
                item.user_id, ids, recs.scores[i][valid], popular, model_version,
                item.event_ts, explanation,
            )
            self._send(self.recommendations_topic, "popular" if popular else "attention",
                       item.event_ts, key=item.user_id.encode(), value=value)

    def send_dead_letter(
        self, key: bytes | None, value: bytes | None, invalid: Invalid, source: str,
    ) -> None:
        """Queue a rejected record: original bytes, the reason in headers."""
        headers = [
            (HEADER_REASON, invalid.reason.encode()),
            (HEADER_DETAIL, invalid.detail.encode("utf-8", "replace")[:512]),
            (HEADER_SOURCE, source.encode()),
        ]
        if value is not None and len(value) > self.dead_letter_max_bytes:
            headers.append((HEADER_TRUNCATED, str(len(value)).encode()))
            value = value[: self.dead_letter_max_bytes]
        if key is not None and len(key) > self.dead_letter_max_bytes:
            key = key[: self.dead_letter_max_bytes]
        self._send(self.dead_letter_topic, "dlq", key=key, value=value, headers=headers)

    def send_changelog(self, topic: str, partition: int, user_id: str, value: bytes) -> None:
        """Queue a user's history record to the changelog partition that mirrors its events."""
        self._send(topic, "changelog", user=user_id, key=user_id.encode(), value=value,
                   partition=partition)

    def commit_transaction(self, offsets: dict, group_metadata: Any) -> Acked:
        """Commit the batch's records and the consumed `offsets` as one transaction.

        Consumers reading with isolation_level=read_committed then see the batch's
        recommendations, dead letters and changelog records exactly when the offsets
        that produced them are committed: never twice, never half.
        """
        if not offsets and not self._in_transaction:
            return Acked()
        if not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, group_metadata)
            self.producer.commit_transaction()
        except KafkaError as exc:
            self._inflight = []
            raise PublishError(f"transaction not committed: {exc}; offsets not committed",
                               kinds=["transaction"]) from exc
        finally:
            self._in_transaction = False
        return self.flush()

    def abort_transaction(self) -> None:
        """Abort the open transaction (if any): its records are never seen committed."""
        self._inflight = []
        if self._in_transaction:
            self._in_transaction = False
            try:
                self.producer.abort_transaction()
            except KafkaError as exc:
                logger.warning("abort_transaction failed: %s", exc)

    def flush(self, timeout_s: float = 120.0) -> Acked:
        """Wait for every queued record; raise `PublishError` if any failed."""
        inflight, self._inflight = self._inflight, []
        if not inflight:
            return Acked()
        self.producer.flush(timeout=timeout_s)
        acked = Acked()
        failures: list[tuple[str, KafkaError]] = []
        for future, kind, event_ts, user in inflight:
            try:
                meta = future.get(timeout=0.1 if future.is_done else timeout_s)
            except KafkaError as exc:
                failures.append((kind, exc))
                continue
            if kind == "dlq":
                acked.dead_letters += 1
            elif kind == "changelog":
                acked.changelog.append((meta.partition, user, meta.offset))
            else:
                acked.recommendations[kind] += 1
                acked.event_ts.append(event_ts)
        if failures:
            for kind, exc in failures:
                logger.error("%s record not acknowledged after retries: %s", kind, exc)
            raise PublishError(
                f"{len(failures)} of {len(inflight)} records not acknowledged after retries "
                f"(first: {failures[0][0]}: {failures[0][1]}); offsets not committed",
                kinds=[kind for kind, _ in failures],
            )
        return acked
