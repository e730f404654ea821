"""`read_to_end` starts each partition where asked, with a client that fetches ahead.

librdkafka starts fetching as soon as a partition is assigned, and a seek issued right
after may come too late for records already on their way: a read from a time must
assign at the looked-up offsets, not assign at the beginning and seek.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from streamrec.kafka_io import topic_reader
from streamrec.kafka_io.port import OFFSET_BEGINNING, ConsumedRecord, TopicPartition

TOPIC = "events"
RECORDS = 40  # one partition; record i has timestamp 1000 * i


class FetchAheadConsumer:
    """A group-less consumer whose assignment starts a fetch at once: the records of
    that first fetch are delivered by the next poll whatever seek comes between."""

    def __init__(self) -> None:
        self.tp = TopicPartition(TOPIC, 0)
        self.position_: int | None = None
        self.in_flight: list[ConsumedRecord] = []

    def _records(self, start: int, count: int) -> list[ConsumedRecord]:
        return [ConsumedRecord(TOPIC, 0, o, 1000 * o, b"k", b"v", [])
                for o in range(start, min(RECORDS, start + count))]

    def partitions_for(self, topic: str) -> set[int]:
        return {0} if topic == TOPIC else set()

    def watermarks(self, tps: Iterable[TopicPartition], timeout_s: float,
                   ) -> dict[TopicPartition, tuple[int, int]]:
        return {tp: (0, RECORDS) for tp in tps}

    def offsets_for_times(self, times: Mapping[TopicPartition, int], timeout_s: float,
                          ) -> dict[TopicPartition, int | None]:
        return {tp: (-(-ms // 1000) if ms < 1000 * RECORDS else None)
                for tp, ms in times.items()}

    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        start = offsets[self.tp]
        self.position_ = 0 if start == OFFSET_BEGINNING else start
        self.in_flight = self._records(self.position_, 10)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position_ = offset  # the fetch in flight is still delivered

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[ConsumedRecord]]:
        assert self.position_ is not None
        batch = self.in_flight or self._records(self.position_, 10)
        self.in_flight = []
        if batch:
            self.position_ = batch[-1].offset + 1
        return {self.tp: batch} if batch else {}

    def position(self, tp: TopicPartition, timeout_s: float) -> int | None:
        return self.position_

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> FetchAheadConsumer:
    fake = FetchAheadConsumer()
    monkeypatch.setattr(topic_reader, "make_consumer", lambda *args, **kwargs: fake)
    return fake


def offsets_read(since_ms: int | None) -> list[int]:
    return [rec.offset for rec in topic_reader.read_to_end(
        "fake:9092", TOPIC, client_id="test", since_ms=since_ms)]


def test_a_read_since_a_time_gets_only_the_records_from_that_time_on(
    consumer: FetchAheadConsumer,
) -> None:
    assert offsets_read(30_000) == list(range(30, RECORDS))
    assert offsets_read(29_500) == list(range(30, RECORDS))


def test_a_read_since_a_time_after_the_last_record_gets_nothing(
    consumer: FetchAheadConsumer,
) -> None:
    assert offsets_read(10**9) == []


def test_a_read_without_a_time_gets_every_record(consumer: FetchAheadConsumer) -> None:
    assert offsets_read(None) == list(range(RECORDS))
