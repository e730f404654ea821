"""Restore reads that use every core: the changelog's partitions read by child processes.

A restore's time is mostly the Kafka client turning fetched bytes into records: about
15-20 µs per record in kafka-python, pure Python under the GIL, so one process reads
on one core however many the box has. A large restore of several partitions is
therefore read by reader processes, a share of the partitions each (balanced by
their record counts), each running `LatestRead` and sending its chunks up a pipe.
The worker decodes them into its stores as they come (`DurableHistories.restore`),
so decoding overlaps the reads, and the item table stays in one process. A small
restore reads in-process: a reader costs about half a second to start.

A reader is `python -m streamrec.worker.state.parallel_read`: it reads its job (a
pickle) from stdin and writes pickled messages to stdout. Both ends are this
package, so pickle is safe here. Readers run in a session of their own (a Ctrl-C
reaches the worker, which stops them) and die at their next write when the worker
is gone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from streamrec.kafka_io.errors import KafkaUnavailableError
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import record_spans
from streamrec.worker.state.changelog import changelog_topic
from streamrec.worker.state.changelog_bulk import BULK_CHUNK
from streamrec.worker.state.changelog_read import LatestChunk, LatestRead

logger = logging.getLogger(__name__)

READER_MIN_RECORDS = 100_000  # a restore of fewer records (upper bound) reads in-process
PROGRESS_EVERY_S = 1.0  # how often a reader reports the records it has read
CHUNKS_IN_FLIGHT = 4  # chunks per reader waiting for the worker to decode them
EXIT_WAIT_S = 10.0  # how long a reader that closed its pipe gets to exit
LOGGERS = ("streamrec", "kafka", "kafka.net.selector")  # a reader logs as the worker does
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"


@dataclass(frozen=True)
class ReaderJob:
    """What one reader process reads: `LatestRead`'s arguments."""

    bootstrap: str
    group_id: str
    partitions: tuple[int, ...]
    security: KafkaSecurity | None
    timeout_s: float
    chunk: int
    log_levels: tuple[tuple[str, int], ...]  # the worker's effective levels (`LOGGERS`)


def latest_read(
    bootstrap: str, group_id: str, partitions: Iterable[int], *, readers: int = 0,
    security: KafkaSecurity | None = None, timeout_s: float = 300.0, chunk: int = BULK_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> LatestRead:
    """The read a restore of `partitions` should use: in reader processes when there are
    at least two partitions and `READER_MIN_RECORDS` records, else in-process.

    `readers`: most reader processes (0: one per usable core, `usable_cores`; 1: always
    in-process).
    """
    wanted = sorted(set(partitions))
    most = min(readers or usable_cores(), len(wanted))
    if most > 1:
        spans = record_spans(bootstrap, changelog_topic(group_id), wanted,
                             client_id=f"{group_id}-restore", security=security)
        if sum(spans.values()) >= READER_MIN_RECORDS:
            return ParallelLatestRead(bootstrap, group_id, balance(spans, most),
                                      security=security, timeout_s=timeout_s, chunk=chunk,
                                      progress=progress)
    return LatestRead(bootstrap, group_id, wanted, security=security, timeout_s=timeout_s,
                      chunk=chunk, progress=progress)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup (v2) CPU
    quota, so a container limited to 2 CPUs on a 64-core host starts 2 readers, not 64."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 CPU controller here: no quota
        pass
    return max(1, cores)


def balance(sizes: dict[int, int], groups: int) -> list[tuple[int, ...]]:
    """Partitions split into at most `groups` non-empty groups of about equal record
    counts (largest first, each to the lightest group), each group sorted."""
    loads = [0] * min(groups, len(sizes))
    members: list[list[int]] = [[] for _ in loads]
    for partition, size in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        lightest = loads.index(min(loads))
        loads[lightest] += size
        members[lightest].append(partition)
    return [tuple(sorted(m)) for m in members if m]


class ParallelLatestRead(LatestRead):
    """`LatestRead` with each group of partitions read by a process of its own.

    Same interface: iterate it for `LatestChunk`s (a partition's chunks come in the
    order read; partitions interleave), then read `records`, `tombstones`, `invalid`
    or `stats()`. `progress(n)` gets the records read so far across readers. A
    reader's error is raised here as it was raised there (`TopicNotFoundError`,
    `KafkaUnavailableError`, ...); a reader that exits without finishing raises
    `KafkaUnavailableError`. Leaving the iteration early stops every reader.
    """

    def __init__(
        self, bootstrap: str, group_id: str, groups: list[tuple[int, ...]], *,
        security: KafkaSecurity | None = None, timeout_s: float = 300.0,
        chunk: int = BULK_CHUNK, progress: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(bootstrap, group_id, [p for g in groups for p in g],
                         security=security, timeout_s=timeout_s, chunk=chunk, progress=progress)
        levels = tuple((name, logging.getLogger(name).getEffectiveLevel()) for name in LOGGERS)
        self.jobs = [ReaderJob(bootstrap, group_id, tuple(g), security, timeout_s, chunk, levels)
                     for g in groups]
        self.readers = len(self.jobs)
        self.pids: list[int] = []  # of the readers of the current iteration

    def __iter__(self) -> Iterator[LatestChunk]:
        self._start = time.perf_counter()
        inbox: queue.Queue[tuple[int, Any]] = queue.Queue(CHUNKS_IN_FLIGHT * len(self.jobs))
        procs: list[subprocess.Popen[bytes]] = []
        pumps: list[threading.Thread] = []
        try:
            for i, job in enumerate(self.jobs):
                proc = subprocess.Popen(reader_command(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, start_new_session=True)
                procs.append(proc)
                _hand_over(proc, job)
                pump = threading.Thread(target=_pump, args=(i, proc.stdout, inbox),
                                        name=f"restore-reader-{i}", daemon=True)
                pump.start()
                pumps.append(pump)
            self.pids = [p.pid for p in procs]
            logger.info("restoring partitions %s with %d reader processes: %s",
                        self.partitions, len(procs), [j.partitions for j in self.jobs])
            yield from self._gather(inbox, procs)
        finally:
            _stop(procs, pumps, inbox)

    def _gather(self, inbox: queue.Queue[tuple[int, Any]],
                procs: list[subprocess.Popen[bytes]]) -> Iterator[LatestChunk]:
        read = [0] * len(procs)
        done = [False] * len(procs)
        while not all(done):
            try:  # a reader's own deadline ends its read; this only guards a silent one
                i, message = inbox.get(timeout=self.timeout_s + EXIT_WAIT_S)
            except queue.Empty:
                raise KafkaUnavailableError(
                    f"the restore readers said nothing for {self.timeout_s:.0f}s") from None
            kind = message[0]
            if kind == "chunk":
                yield message[1]
            elif kind == "progress":
                read[i] = message[1]
                if self.progress is not None:
                    self.progress(sum(read))
            elif kind == "done":
                done[i] = True
                _, records, tombstones, invalid = message
                self.records += records
                self.tombstones += tombstones
                self.invalid += invalid
                logger.debug("restore reader of partitions %s done: %d records in %.1fs",
                             list(self.jobs[i].partitions), records,
                             time.perf_counter() - self._start)
            elif kind == "error":
                raise message[1]
            elif not done[i]:  # "eof": the pipe closed before the reader said it was done
                try:
                    code = procs[i].wait(timeout=EXIT_WAIT_S)
                except subprocess.TimeoutExpired:
                    code = None
                raise KafkaUnavailableError(
                    f"the restore reader of changelog partitions "
                    f"{list(self.jobs[i].partitions)} stopped before it finished "
                    f"(exit code {code}{': ' + message[1] if message[1] else ''})")

def reader_command() -> list[str]:
    """The command line of one reader process."""
    return [sys.executable, "-m", __name__]


def _hand_over(proc: subprocess.Popen[bytes], job: ReaderJob) -> None:
    """Write the job to a reader's stdin and close it (a reader that died at once has
    closed its end: its pump reports it)."""
    stdin = proc.stdin
    if stdin is None:
        return
    try:
        stdin.write(pickle.dumps(job))
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


def _pump(index: int, stream: IO[bytes], inbox: queue.Queue[tuple[int, Any]]) -> None:
    """Move one reader's messages into `inbox` (blocking while it is full, so a reader
    never runs more than `CHUNKS_IN_FLIGHT` chunks ahead), then ("eof", why)."""
    why = ""
    try:
        while True:
            inbox.put((index, pickle.load(stream)))
    except EOFError:
        pass
    except Exception as exc:  # a torn message: the reader died mid-write
        why = f"unreadable message: {exc}"
    inbox.put((index, ("eof", why)))


def _stop(procs: list[subprocess.Popen[bytes]], pumps: list[threading.Thread],
          inbox: queue.Queue[tuple[int, Any]]) -> None:
    """Kill readers still running (an error or an early exit), wait for them, and drain
    the inbox until every pump has seen its pipe close."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait()
    while any(p.is_alive() for p in pumps):
        with contextlib.suppress(queue.Empty):
            inbox.get(timeout=0.05)
    for proc in procs:
        if proc.stdout is not None:
            proc.stdout.close()


def _send(out: IO[bytes], message: tuple[Any, ...]) -> None:
    pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()


def main() -> int:
    """A reader process: run the job on stdin, messages to stdout, logs to stderr."""
    job: ReaderJob = pickle.load(sys.stdin.buffer)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot tear a message
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s "
                        f"(restore reader {list(job.partitions)}): %(message)s")
    for name, level in job.log_levels:
        logging.getLogger(name).setLevel(level)
    said = 0.0

    def progress(records: int) -> None:
        nonlocal said
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            _send(out, ("progress", records))

    read = LatestRead(job.bootstrap, job.group_id, job.partitions, security=job.security,
                      timeout_s=job.timeout_s, chunk=job.chunk, progress=progress)
    try:
        for chunk in read:
            _send(out, ("chunk", chunk))
        _send(out, ("progress", read.records))
        _send(out, ("done", read.records, read.tombstones, read.invalid))
    except BrokenPipeError:
        return 1  # the worker is gone
    except Exception as exc:  # handed to the worker, which raises it
        try:
            message = pickle.dumps(("error", exc), protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(message)
        except Exception:
            message = pickle.dumps(("error", KafkaUnavailableError(
                f"restore reader of partitions {list(job.partitions)} failed: "
                f"{type(exc).__name__}: {exc}")))
        out.write(message)
        out.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
