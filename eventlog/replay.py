"""Replay an interaction log into the events topic at a steady rate.

For demos, load tests and backfills: each user's interactions keep their order,
and users are interleaved at random (every user's first event before anyone's
second, and so on), so the topic looks like many users active at once. Events follow
the contract (key = user id, JSON value, `ts` = the time of sending), so the
worker's event-to-recommendation latency is measured from the moment of replay.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
from tqdm import tqdm

from streamrec.encoder.data import Interactions
from streamrec.kafka_io.port import Delivery, Producer
from streamrec.worker.errors import PublishError
from streamrec.worker.validate import now_ms

logger = logging.getLogger(__name__)


def interleave(interactions: Interactions, seed: int = 0) -> Iterator[tuple[str, str]]:
    """(user id, item id) pairs: position 0 of every user, then position 1, ...

    Users are shuffled within each position, so the stream has no user-sorted runs.
    """
    lengths = np.fromiter((len(s) for s in interactions.sequences), dtype=np.int64)
    user_idx = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(user_idx)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    noise = np.random.default_rng(seed).random(len(user_idx))
    order = np.lexsort((noise, position))
    flat_items = np.concatenate(interactions.sequences) if len(lengths) else np.zeros(0, int)
    ids = interactions.vocab.external(flat_items[order])
    users = interactions.users
    for u, item in zip(user_idx[order], ids, strict=True):
        yield users[u], item


def replay(
    producer: Producer,
    topic: str,
    events: Iterator[tuple[str, str]],
    rate: float,
    limit: int | None = None,
    stop: threading.Event | None = None,
    on_send: Callable[[str, str], None] | None = None,
    progress_total: int | None = None,
) -> int:
    """Send events at `rate` per second (0 = as fast as possible); returns how many.

    Waits for every acknowledgement at the end and raises `PublishError` on failures.
    A progress bar is shown when `progress_total` is given.
    """
    bar = tqdm(total=progress_total, unit="ev", disable=progress_total is None)
    sent = 0
    start = time.monotonic()
    deliveries: list[Delivery] = []
    for user_id, item_id in events:
        if (stop is not None and stop.is_set()) or (limit is not None and sent >= limit):
            break
        if rate > 0:
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                if stop is not None:
                    if stop.wait(delay):
                        break
                else:
                    time.sleep(delay)
        value = json.dumps({"user_id": user_id, "item_id": item_id, "ts": now_ms()})
        deliveries.append(producer.send(topic, value.encode(), key=user_id.encode()))
        producer.poll(0)
        if on_send is not None:
            on_send(user_id, item_id)
        sent += 1
        bar.update()
        if len(deliveries) >= 10_000:
            confirm_sent(producer, deliveries)
    confirm_sent(producer, deliveries)
    bar.close()
    logger.info("replayed %d events to %s in %.1fs", sent, topic, time.monotonic() - start)
    return sent


def confirm_sent(producer: Producer, deliveries: list[Delivery], timeout_s: float = 120.0,
                 what: str = "events") -> None:
    """Wait for every delivery of `deliveries` (then cleared); `PublishError` if any failed."""
    producer.flush(timeout_s)
    failed = [d for d in deliveries if not d.done or d.error is not None]
    if failed:
        first = failed[0].error or f"no answer within {timeout_s:.0f}s"
        raise PublishError(f"{len(failed)} {what} not acknowledged: {first}")
    deliveries.clear()
