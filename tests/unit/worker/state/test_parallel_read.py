"""Restore reads in reader processes: the choice, the split, and the worker's side of
the pipe, against stand-in readers (the real reader runs in the changelog integration
tests)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from streamrec.kafka_io.errors import KafkaUnavailableError, TopicNotFoundError
from streamrec.worker.state import parallel_read
from streamrec.worker.state.changelog_read import LatestChunk, LatestRead
from streamrec.worker.state.parallel_read import ParallelLatestRead, balance, latest_read

# A stand-in reader: reads its job like the real one, then sends the messages of
# `MESSAGES` for its first partition (`{p}` is replaced by it).
STAND_IN = """
import pickle, sys, time
from streamrec.worker.state.changelog_read import LatestChunk
from streamrec.kafka_io.errors import TopicNotFoundError
job = pickle.load(sys.stdin.buffer)
p = job.partitions[0]
out = sys.stdout.buffer
for m in {messages}:
    pickle.dump(m, out)
    out.flush()
{after}
"""


def stand_in(monkeypatch: pytest.MonkeyPatch, messages: str, after: str = "") -> None:
    script = STAND_IN.format(messages=messages, after=after)
    monkeypatch.setattr(parallel_read, "reader_command", lambda: [sys.executable, "-c", script])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_partitions_are_split_by_their_record_counts() -> None:
    assert balance({0: 100, 1: 10, 2: 90, 3: 0}, 2) == [(0, 3), (1, 2)]
    assert balance({0: 5, 1: 5, 2: 5}, 8) == [(0,), (1,), (2,)]
    assert balance({0: 5, 1: 5, 2: 5}, 1) == [(0, 1, 2)]


def test_small_restores_and_single_partitions_read_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans = {0: 10, 1: 20}
    monkeypatch.setattr(parallel_read, "record_spans", lambda *a, **k: spans)
    assert type(latest_read("unused:9092", "g", [0, 1], readers=1)) is LatestRead
    assert type(latest_read("unused:9092", "g", [0], readers=4)) is LatestRead
    assert type(latest_read("unused:9092", "g", [0, 1], readers=2)) is LatestRead
    monkeypatch.setattr(parallel_read, "READER_MIN_RECORDS", 30)
    read = latest_read("unused:9092", "g", [1, 0], readers=2)
    assert isinstance(read, ParallelLatestRead)
    assert [job.partitions for job in read.jobs] == [(1,), (0,)]


def test_chunks_counters_and_progress_come_from_every_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand_in(monkeypatch, '[("progress", 2), '
                          '("chunk", LatestChunk(p, {f"u{p}": (b"v", 7)}, {f"gone{p}"})), '
                          '("done", 2, 1, 0)]')
    seen: list[int] = []
    read = ParallelLatestRead("unused:9092", "g", [(0,), (1,)], progress=seen.append)
    chunks = sorted(read, key=lambda c: c.partition)
    assert chunks == [LatestChunk(0, {"u0": (b"v", 7)}, {"gone0"}),
                      LatestChunk(1, {"u1": (b"v", 7)}, {"gone1"})]
    assert (read.records, read.tombstones, read.invalid) == (4, 2, 0)
    assert seen[-1] == 4
    assert read.stats(users=2).users == 2
    assert all(gone(pid) for pid in read.pids)


def test_a_readers_error_is_raised_as_it_was_raised_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand_in(monkeypatch, '[("error", TopicNotFoundError("topic \'x\' does not exist"))]')
    with pytest.raises(TopicNotFoundError, match="does not exist"):
        list(ParallelLatestRead("unused:9092", "g", [(0,), (1,)]))


def test_a_reader_that_stops_without_finishing_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand_in(monkeypatch, '[("progress", 1)]', after="sys.exit(3)")
    with pytest.raises(KafkaUnavailableError, match=r"partitions \[[01]\] stopped before it "
                                                    r"finished \(exit code 3"):
        list(ParallelLatestRead("unused:9092", "g", [(0,), (1,)]))


def test_leaving_the_read_early_stops_the_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(monkeypatch, '[("chunk", LatestChunk(p, {"u": (b"v", 1)}, set()))]',
             after="time.sleep(120)")
    read = ParallelLatestRead("unused:9092", "g", [(0,), (1,)])
    chunks = iter(read)
    next(chunks)
    began = time.monotonic()
    chunks.close()  # type: ignore[attr-defined]
    assert time.monotonic() - began < 10
    assert len(read.pids) == 2
    assert all(gone(pid) for pid in read.pids)


@pytest.mark.parametrize(("cpu_max", "cap"), [("150000 100000\n", 2), ("100000 100000\n", 1),
                                              ("max 100000\n", None), (None, None)])
def test_readers_per_core_respect_a_container_cpu_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str | None, cap: int | None,
) -> None:
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    monkeypatch.setattr(parallel_read, "CGROUP_CPU_MAX", path)
    monkeypatch.setattr(parallel_read.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert parallel_read.usable_cores() == (cap or 8)
