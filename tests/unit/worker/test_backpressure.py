"""The backpressure policy against a fake consumer: pause at the limit, stay paused
above half, resume at half, and pause partitions assigned while paused."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from streamrec.worker.backpressure import Backpressure
from streamrec.worker.config import WorkerConfig


class FakeConsumer:
    """Records the pause state per partition, as the Kafka port's consumer keeps it."""

    def __init__(self, partitions: set[int]) -> None:
        self.assigned = set(partitions)
        self.paused_now: set[int] = set()
        self.asked = 0  # calls of assignment(): a round trip in librdkafka

    def assignment(self) -> set[int]:
        self.asked += 1
        return set(self.assigned)

    def paused(self) -> set[int]:
        return set(self.paused_now)

    def pause(self, partitions: Iterable[int]) -> None:
        self.paused_now |= set(partitions)

    def resume(self, partitions: Iterable[int]) -> None:
        self.paused_now -= set(partitions)


def test_pauses_at_the_limit_and_not_below() -> None:
    consumer = FakeConsumer({0, 1})
    policy = Backpressure(limit=10)
    assert policy.update(9, consumer) is False
    assert not policy.paused
    assert consumer.paused_now == set()
    assert policy.update(10, consumer) is True  # a new pause: the worker counts it
    assert policy.paused
    assert consumer.paused_now == {0, 1}
    assert policy.update(12, consumer) is False  # still the same pause
    assert consumer.paused_now == {0, 1}


def test_stays_paused_above_half_and_resumes_at_half() -> None:
    consumer = FakeConsumer({0, 1, 2})
    policy = Backpressure(limit=11)  # half: 11 // 2 = 5
    policy.update(11, consumer)
    for pending in (10, 9, 6):  # draining, but above half: no flapping
        assert policy.update(pending, consumer) is False
        assert policy.paused, pending
        assert consumer.paused_now == {0, 1, 2}, pending
    policy.update(5, consumer)
    assert not policy.paused
    assert consumer.paused_now == set()
    policy.update(6, consumer)  # below the limit again: fetching goes on
    assert consumer.paused_now == set()


def test_partitions_assigned_while_paused_are_paused_too() -> None:
    consumer = FakeConsumer({0})
    policy = Backpressure(limit=4)
    policy.update(4, consumer)
    consumer.assigned |= {1, 2}  # a rebalance hands over more partitions
    policy.assigned()  # the worker's assignment callback says so
    policy.update(3, consumer)
    assert consumer.paused_now == {0, 1, 2}
    policy.update(2, consumer)
    assert consumer.paused_now == set()


def test_each_pause_is_reported_once() -> None:
    consumer = FakeConsumer({0})
    policy = Backpressure(limit=2)
    started = [policy.update(p, consumer) for p in (2, 3, 1, 2, 2, 0)]
    assert started == [True, False, False, True, False, False]


def test_the_assignment_is_asked_only_when_it_changed() -> None:
    consumer = FakeConsumer({0, 1})
    policy = Backpressure(limit=4)
    policy.update(4, consumer)  # pauses: asks once
    for _ in range(10):
        policy.update(3, consumer)  # still paused, nothing assigned: no round trip
    assert consumer.asked == 1
    policy.assigned()
    policy.update(3, consumer)
    assert consumer.asked == 2


def test_holds_from_half_the_limit_and_polls_at_least_every_hold_max() -> None:
    """Records stay in the client's queue (no pause, nothing purged) while half the
    limit waits, but never longer than HOLD_MAX_S without a poll."""
    from streamrec.worker.backpressure import HOLD_MAX_S

    policy = Backpressure(limit=10)
    policy.polled(now=100.0)
    assert not policy.holds(4, now=100.1)  # below half: take the records
    assert policy.holds(5, now=100.1)
    assert policy.holds(9, now=100.0 + HOLD_MAX_S * 0.9)
    assert not policy.holds(9, now=100.0 + HOLD_MAX_S)  # callbacks and errors are due
    policy.polled(now=100.0 + HOLD_MAX_S)
    assert policy.holds(9, now=100.0 + HOLD_MAX_S * 1.5)


def test_pauses_are_counted_once_each_and_the_paused_state_shown() -> None:
    from streamrec.worker.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    consumer = FakeConsumer({0})
    policy = Backpressure(limit=2, metrics=metrics)
    shown = []
    for pending in (2, 3, 1, 2, 0):
        policy.update(pending, consumer)
        shown.append(metrics.paused._value.get())
    assert metrics.backpressure_pauses._value.get() == 2
    assert shown == [1, 1, 0, 1, 0]


@pytest.mark.parametrize(("max_batch", "max_pending"),
                         [(1, 0), (16, 0), (64, 0), (1024, 0), (16, 256), (1024, 300), (8, 3)])
def test_one_poll_from_below_the_hold_never_reaches_the_pause(max_batch: int,
                                                               max_pending: int) -> None:
    """A paused librdkafka consumer drops what it fetched: the poll that the hold lets
    through must not cross the limit (at --max-batch 16 it did, on every poll)."""
    cfg = WorkerConfig(model_dir=Path("."), max_batch=max_batch, max_pending=max_pending)
    policy = Backpressure(limit=cfg.pending_limit)
    below = cfg.pending_limit // 2 - 1
    assert not policy.holds(below, now=0.0)
    assert policy.update(below + cfg.poll_records, FakeConsumer({0})) is False
    assert cfg.poll_records >= 1


def test_the_default_limit_and_poll_at_the_default_batch_are_unchanged() -> None:
    cfg = WorkerConfig(model_dir=Path("."))
    assert (cfg.max_batch, cfg.pending_limit, cfg.poll_records) == (1024, 16_384, 4_096)
    small = WorkerConfig(model_dir=Path("."), max_batch=16)
    assert (small.pending_limit, small.poll_records) == (1_000, 500)
