"""The worker never waits without a bound (issue 21, section 4), against the real broker.

Worker processes (`streamrec worker`, as in production) in the states a Kafka client can
block in:

- a group whose rebalance another member holds (it joined, then stopped polling; the
  coordinator waits for it up to its rebalance timeout): the worker cannot join. With
  `--max-stall-s` it exits 3, naming the wait; SIGTERM mid-join ends it within
  `--shutdown-timeout-s` (kafka-python's close waits for the JoinGroup the broker holds:
  the bound cuts it, exit 4), and a second SIGTERM at once;
- a broker that is not there at start, or that goes away mid-stream with records in
  flight: SIGTERM ends the process within the bound, abandoning the drain, and nothing is
  committed past what was published;
- a large restore read by reader processes: SIGTERM leaves it at once (the readers
  stopped, its partitions not served, nothing committed) and the worker exits 0;
- and the false alarm the watchdog must not raise: a member with no partitions (more
  workers than partitions) on a quiet topic stays up and healthy.

The bounds are short here (seconds) to keep the tests fast; the defaults are 60 s
(`--max-stall-s`) and 30 s (`--shutdown-timeout-s`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.worker.state.changelog import HistoryRecord, changelog_topic, encode_history
from tests.conftest import TOPIC_READY_TIMEOUT_MS, free_port
from tests.integration.durability import WorkerProcess, worker_args
from tests.integration.helpers import (
    committed_offsets,
    consume_until,
    end_offsets,
    event,
    metric_sum,
    producer,
    scrape,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

BOUND_S = 6.0  # --shutdown-timeout-s of these tests
SLACK_S = 3.0  # scheduling on a busy 2-core box: exits are timed against BOUND_S + this
STALL_S = 5.0  # --max-stall-s where a stall is the point
RESTORE_USERS = 400_000  # of 50 items: about 11 s of restore with 2 readers on 2 cores


def wait_for(condition: Callable[[], bool], what: str, worker: WorkerProcess,
             timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if not worker.alive():
            raise AssertionError(f"the worker exited before {what}: {worker.output()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {worker.output()}")


def signal_and_time(worker: WorkerProcess, *signals: float) -> tuple[int, float]:
    """Send SIGTERM at each of the given delays (seconds after the first); returns the
    exit code and the seconds from the first signal to the exit."""
    start = time.monotonic()
    for at in signals:
        time.sleep(max(0.0, start + at - time.monotonic()))
        worker.proc.send_signal(signal.SIGTERM)
    try:
        code = worker.proc.wait(timeout=BOUND_S + 60)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()
        raise AssertionError(f"still running {BOUND_S + 60:.0f}s after SIGTERM: "
                             f"{worker.output()}") from None
    return code, time.monotonic() - start


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not serving (yet, or any more)
        return 0


def waited_s(port: int) -> float:
    try:
        return metric_sum(scrape(port), "streamrec_stall_seconds")
    except OSError:  # the metrics server is not up yet
        return 0.0


@contextmanager
def member_holding_the_group(bootstrap: str, topics: dict[str, str]) -> Iterator[None]:
    """A member that joined the group, owns every partition and stops polling: its
    heartbeats keep it in the group, so a rebalance waits for it to rejoin for up to its
    rebalance timeout (2 minutes), and any new member's JoinGroup is held that long."""
    member = KafkaConsumer(topics["events"], bootstrap_servers=bootstrap,
                           group_id=topics["group"], enable_auto_commit=False,
                           session_timeout_ms=30_000, heartbeat_interval_ms=3_000,
                           max_poll_interval_ms=120_000)
    try:
        deadline = time.monotonic() + 60
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(timeout_ms=200)
        assert member.assignment(), "the holding member was never assigned"
        yield
    finally:
        member.close(autocommit=False)


STARTED: list[WorkerProcess] = []  # killed after each test, should one outlive it


@pytest.fixture(autouse=True)
def no_worker_left() -> Iterator[None]:
    yield
    while STARTED:
        worker = STARTED.pop()
        if worker.alive():  # a failed test: a hanging worker must not outlive it
            worker.proc.kill()
            worker.proc.wait()


def start(tmp_path: Path, name: str, bootstrap: str, model: Path, topics: dict[str, str],
          *extra: str) -> tuple[WorkerProcess, int]:
    port = free_port()
    args = worker_args(bootstrap, model, topics, "--metrics-port", str(port),
                       "--shutdown-timeout-s", str(BOUND_S), *extra)
    worker = WorkerProcess(tmp_path / f"{name}.log", args)
    STARTED.append(worker)
    return worker, port


def test_a_worker_that_cannot_join_its_group_exits_3_naming_the_wait(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    with member_holding_the_group(kafka_bootstrap, topics):
        worker, port = start(tmp_path, "unjoined", kafka_bootstrap, tiny_checkpoint, topics,
                             "--max-stall-s", str(STALL_S))
        wait_for(lambda: waited_s(port) >= 1, "the worker to wait for its assignment", worker)
        assert healthz(port) == 200  # waiting, not yet stalled
        seen = time.monotonic()
        code = worker.proc.wait(timeout=STALL_S + BOUND_S + SLACK_S + 5)
        took = time.monotonic() - seen
    log = worker.output()
    assert code == 3, log
    assert re.search(r"stalled: waited [5-7]s for an assignment from group", log), log
    assert took <= STALL_S + BOUND_S + SLACK_S, f"{took:.1f}s"
    assert committed_offsets(kafka_bootstrap, topics["group"], topics["events"]) == {}
    print(f"not joined: exit 3 {took:.1f}s after the wait was first seen")


@pytest.mark.parametrize("sigterms", [1, 2], ids=["sigterm", "second-sigterm"])
def test_sigterm_mid_join_ends_the_process_within_the_bound(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
    sigterms: int,
) -> None:
    with member_holding_the_group(kafka_bootstrap, topics):
        worker, port = start(tmp_path, "mid-join", kafka_bootstrap, tiny_checkpoint, topics)
        wait_for(lambda: waited_s(port) >= 2, "the worker to be mid-join", worker)
        if sigterms == 1:
            code, took = signal_and_time(worker, 0.0)
        else:  # the second one while the first is being handled: out at once
            code, took = signal_and_time(worker, 0.0, 1.0)
    log = worker.output()
    if sigterms == 1:
        assert took <= BOUND_S + SLACK_S, f"{took:.1f}s: {log}"
        # kafka-python's close waits for the JoinGroup the broker holds, and the bound
        # cuts it short; confluent's takes about 5 s, and may finish within the bound.
        assert code in (0, 4), log
        if code == 4:
            assert "SIGTERM: still not out after 6s; exiting now (code 4)" in log
            assert "abandoning: closing the " in log  # the consumer, or the producer
    else:
        assert took <= 1.0 + SLACK_S, f"{took:.1f}s: {log}"
        assert code == 128 + signal.SIGTERM, log
        assert "SIGTERM after SIGTERM; exiting now" in log
    assert committed_offsets(kafka_bootstrap, topics["group"], topics["events"]) == {}
    print(f"mid-join, {sigterms} SIGTERM: exit {code} after {took:.1f}s")


def test_sigterm_while_no_broker_answers_ends_the_process_within_the_bound(
    tiny_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # each client would retry for 30 s
    worker, _ = start(tmp_path, "no-broker", nobody, tiny_checkpoint, topics)
    wait_for(lambda: "effective configuration" in worker.output(), "the worker to start",
             worker)
    time.sleep(1.0)
    code, took = signal_and_time(worker, 0.0)
    log = worker.output()
    assert took <= BOUND_S + SLACK_S, f"{took:.1f}s: {log}"
    assert code == 4, log
    assert "abandoning: creating topics" in log
    print(f"no broker: exit {code} after {took:.1f}s")


def test_sigterm_after_the_broker_went_away_abandons_the_drain_within_the_bound(
    own_broker: LocalBroker, own_topics: dict[str, str], tiny_checkpoint: Path, tmp_path: Path,
) -> None:
    """(`own_broker` goes away mid-test.)"""
    bootstrap, topics = own_broker.config.bootstrap, own_topics
    # The worker commits every 10 s, so some of what it consumed is not committed when the
    # broker goes: the drain has work, and the bound must cut it short.
    worker, _ = start(tmp_path, "broker-gone", bootstrap, tiny_checkpoint, topics,
                      "--commit-interval-ms", "10000")
    send = producer(bootstrap)
    sent = 0
    worker.wait_processing()
    for n in range(2000):
        key, value = event(f"user-{n % 200}", f"i{n % 40 + 1}", 1_700_000_000_000 + n)
        send.send(topics["events"], key=key, value=value)
        sent += 1
        if n % 200 == 199:
            send.flush()
            time.sleep(0.1)
    send.flush()
    send.close()
    consume_until(bootstrap, topics["recs"], lambda rs: len(rs) >= 100)
    own_broker.stop()
    code, took = signal_and_time(worker, 0.0)
    log = worker.output()
    assert took <= BOUND_S + SLACK_S, f"{took:.1f}s: {log}"
    assert code in (0, 4), log
    if code == 4:
        assert "SIGTERM: still not out after 6s; exiting now (code 4)" in log
    print(f"broker gone: exit {code} after {took:.1f}s")

    own_broker.start(timeout_s=180)  # to read what was committed and published
    committed = committed_offsets(bootstrap, topics["group"], topics["events"])
    ends = end_offsets(bootstrap, topics["events"])
    assert sum(ends.values()) == sent
    events = consume_until(bootstrap, topics["events"], lambda rs: len(rs) >= sent)
    recs = consume_until(bootstrap, topics["recs"], lambda rs: False, timeout_s=5)
    served: dict[str, int] = {}
    for r in recs:
        doc = json.loads(r.value)
        served[doc["user_id"]] = max(served.get(doc["user_id"], 0), doc["event_ts"])
    unserved = [r.offset for r in events if r.offset < committed.get(r.partition, 0)
                and served.get(json.loads(r.value)["user_id"], -1) < json.loads(r.value)["ts"]]
    assert not unserved, f"committed past {len(unserved)} unpublished events"


@pytest.fixture
def big_changelog(admin: KafkaAdminClient, kafka_bootstrap: str, topics: dict[str, str]
                  ) -> Iterator[str]:
    """The group's changelog (3 partitions, as the events topic) holding RESTORE_USERS
    users: a restore the worker reads with reader processes."""
    topic = changelog_topic(topics["group"])
    admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"cleanup.policy": "compact"})])
    admin.wait_for_topics([topic], timeout_ms=TOPIC_READY_TIMEOUT_MS)
    value = encode_history(HistoryRecord(  # 50 items: the restore rate of docs/BENCHMARKS.md
        tuple(f"i{n % 40 + 1}" for n in range(50)),
        tuple(1_700_000_000_000 + n for n in range(50)), -1))
    send = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50,
                         batch_size=512 * 1024, compression_type=None)
    for n in range(RESTORE_USERS):
        send.send(topic, key=f"user-{n}".encode(), value=value, partition=n % 3)
    send.flush()
    send.close()
    yield topic
    admin.delete_topics([topic])


def reader_pids(parent: int) -> list[int]:
    """The restore reader processes whose parent is `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"parallel_read" in cmdline:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_mid_restore_leaves_the_restore_and_stops_its_readers(
    kafka_bootstrap: str, long_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
    big_changelog: str,
) -> None:
    send = producer(kafka_bootstrap)  # events of users whose state is not restored yet
    for n in range(300):
        key, value = event(f"user-{n}", "i3", 1_700_000_001_000 + n)
        send.send(topics["events"], key=key, value=value)
    send.flush()
    send.close()
    worker, _ = start(tmp_path, "mid-restore", kafka_bootstrap, long_checkpoint, topics,
                      "--restore-readers", "2")
    wait_for(lambda: "with 2 reader processes" in worker.output(), "the restore readers",
             worker)
    readers = reader_pids(worker.proc.pid)
    assert len(readers) == 2, readers
    code, took = signal_and_time(worker, 0.0)
    log = worker.output()
    # The restore takes about 5 s more; the worker leaves it at the readers' next report.
    assert "restore of partitions [0, 1, 2] left after" in log, log
    assert "restored" not in log, log
    assert code == 0, log
    assert took <= BOUND_S + SLACK_S, f"{took:.1f}s: {log}"
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in readers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in readers), "restore readers outlived the worker"
    # Nothing of the partitions whose restore was left is applied, published or committed.
    assert committed_offsets(kafka_bootstrap, topics["group"], topics["events"]) == {}
    assert sum(end_offsets(kafka_bootstrap, topics["recs"]).values()) == 0
    print(f"mid-restore: exit {code} after {took:.1f}s")


def test_a_member_without_partitions_on_a_quiet_topic_is_not_stalled(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
    new_topic: Callable[..., str],
) -> None:
    topics = {**topics, "events": new_topic(partitions=1, prefix="events")}
    workers = [start(tmp_path, f"member-{n}", kafka_bootstrap, tiny_checkpoint, topics,
                     "--max-stall-s", str(STALL_S)) for n in range(2)]
    try:
        for worker, port in workers:
            wait_for(lambda w=worker, p=port: waited_s(p) == 0 and healthz(p) == 200
                     and "assigned partitions" in w.output(), "an assignment", worker)
        time.sleep(3 * STALL_S)  # no events at all; one member has no partition
        assignments = [w.output().rsplit("assigned partitions ", 1)[1].split(" ")[0]
                       for w, _ in workers]
        assert sorted(assignments) == ["[0]", "[]"], assignments
        for worker, port in workers:
            assert worker.alive(), worker.output()
            assert healthz(port) == 200
            assert waited_s(port) == 0
    finally:
        codes = [worker.terminate() for worker, _ in workers]
    assert codes == [0, 0], [w.output() for w, _ in workers]
