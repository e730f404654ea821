"""Micro-batching: size and time limits, one row per user, safe commit positions."""

from __future__ import annotations

import pytest

from streamrec.worker.batcher import MicroBatcher


def test_cuts_a_batch_at_max_batch_users() -> None:
    b = MicroBatcher(max_batch=3, max_wait_ms=10_000)
    for i in range(5):
        b.add(0, f"u{i}", offset=i, event_ts=i, now=0.0)
    assert b.ready(now=0.0)
    assert [x.user_id for x in b.take()] == ["u0", "u1", "u2"]
    assert not b.ready(now=0.0)
    assert [x.user_id for x in b.take()] == ["u3", "u4"]


def test_cuts_a_batch_when_the_oldest_user_waited_max_wait() -> None:
    b = MicroBatcher(max_batch=100, max_wait_ms=20)
    b.add(0, "u", offset=0, event_ts=1, now=10.0)
    assert not b.ready(now=10.010)
    assert b.wait_time(now=10.010) == pytest.approx(0.010)
    assert b.ready(now=10.020)


def test_one_row_per_user_with_the_latest_event_time() -> None:
    b = MicroBatcher(max_batch=10, max_wait_ms=0)
    b.add(0, "u", offset=5, event_ts=100, now=0.0)
    b.add(0, "v", offset=6, event_ts=101, now=0.0)
    b.add(0, "u", offset=7, event_ts=102, now=0.0)
    batch = b.take()
    assert [(x.user_id, x.event_ts) for x in batch] == [("u", 102), ("v", 101)]


def test_same_user_id_on_two_partitions_are_two_rows() -> None:
    b = MicroBatcher(max_batch=10, max_wait_ms=0)
    b.add(0, "u", offset=1, event_ts=1)
    b.add(1, "u", offset=1, event_ts=1)
    assert len(b.take()) == 2


def test_low_watermark_is_first_unpublished_offset_per_partition() -> None:
    b = MicroBatcher(max_batch=1, max_wait_ms=0)
    b.add(0, "a", offset=10, event_ts=1, now=0.0)
    b.add(0, "b", offset=11, event_ts=1, now=0.0)
    b.add(0, "a", offset=12, event_ts=1, now=0.0)
    b.add(2, "c", offset=3, event_ts=1, now=0.0)
    assert b.low_watermarks() == {0: 10, 2: 3}
    b.take()  # publishes "a": its offsets 10 and 12 are covered
    assert b.low_watermarks() == {0: 11, 2: 3}


def test_drop_partition_forgets_its_users() -> None:
    b = MicroBatcher(max_batch=10, max_wait_ms=0)
    b.add(0, "a", offset=1, event_ts=1)
    b.add(1, "b", offset=1, event_ts=1)
    assert b.drop_partition(0) == 1
    assert [x.user_id for x in b.take()] == ["b"]
    assert b.low_watermarks() == {}


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(max_batch=0, max_wait_ms=1)
