"""Tools of the failure tests: a steady producer with a record of what it sent, worker
processes to kill and restart, and the expected final state computed from the stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from kafka import KafkaProducer

from streamrec.worker.state.changelog import HistoryRecord
from streamrec.worker.state.changelog_read import restore_partitions
from tests.integration.helpers import committed_offsets, end_offsets


class SteadyProducer(threading.Thread):
    """Sends `total` valid events for `users` users at `rate`/s; remembers every send.

    User u's k-th event is item i{(7u + k) % 40 + 1} with a unique `ts`, so a lost,
    duplicated or reordered event changes the user's history.
    """

    def __init__(self, bootstrap: str, topic: str, total: int, users: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.total, self.users, self.rate = total, users, rate
        self.sent: list[tuple[str, str, int]] = []
        self.error: BaseException | None = None
        self.base_ts = int(time.time() * 1000)

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                 enable_idempotence=True, linger_ms=5,
                                 delivery_timeout_ms=180_000, retries=2**31 - 1)
        start = time.monotonic()
        try:
            for k in range(self.total):
                delay = start + k / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                u, step = k % self.users, k // self.users
                user, item, ts = f"user-{u}", f"i{(7 * u + step) % 40 + 1}", self.base_ts + k
                value = json.dumps({"user_id": user, "item_id": item, "ts": ts}).encode()
                producer.send(self.topic, key=user.encode(), value=value)
                self.sent.append((user, item, ts))
            producer.flush(timeout=180)
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc
        finally:
            producer.close(timeout=30)

    def expected(self, max_len: int) -> dict[str, tuple[list[str], list[int]]]:
        """Each user's last `max_len` (items, ts), oldest first."""
        items: dict[str, list[str]] = defaultdict(list)
        stamps: dict[str, list[int]] = defaultdict(list)
        for user, item, ts in self.sent:
            items[user].append(item)
            stamps[user].append(ts)
        return {u: (items[u][-max_len:], stamps[u][-max_len:]) for u in items}


class WorkerProcess:
    """`streamrec worker` as a child process, for SIGKILL and SIGTERM."""

    def __init__(self, log: Path, args: list[str]) -> None:
        self.log_path = log
        self._log = log.open("a")
        self._log_start = self._log.tell()  # this process's lines begin here
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli.main", "worker", *args],
            stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()

    def terminate(self, timeout_s: float = 90.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def wait_processing(self, timeout_s: float = 120.0) -> None:
        """Until this process has been assigned its partitions and committed once."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.log_path.open() as f:
                f.seek(self._log_start)
                text = f.read()
            if "assigned partitions" in text and "changelog" in text:
                return
            if not self.alive():
                raise AssertionError(f"worker exited: {self.output()}")
            time.sleep(0.2)
        raise AssertionError(f"worker never started processing: {self.output()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text()[-4000:]


def worker_args(bootstrap: str, model: Path, topics: dict[str, str], *extra: str) -> list[str]:
    """Flags for a worker on the test's topics."""
    return ["--bootstrap", bootstrap, "--model", str(model),
            "--events-topic", topics["events"], "--recommendations-topic", topics["recs"],
            "--dead-letter-topic", topics["dlq"], "--group-id", topics["group"],
            "--metrics-port", "-1", "--max-batch", "32", "--device", "cpu",
            "--session-timeout-ms", "6000", *extra]


def wait_drained(bootstrap: str, group: str, topic: str, timeout_s: float = 120.0) -> None:
    """Until the group's committed offsets reach the end of every partition."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ends = end_offsets(bootstrap, topic)
        if committed_offsets(bootstrap, group, topic) == ends:
            return
        time.sleep(1.0)
    raise AssertionError(f"group {group} did not commit up to {end_offsets(bootstrap, topic)}")


def final_state(bootstrap: str, group: str, partitions: int) -> dict[str, HistoryRecord]:
    """Every user's history as the changelog holds it (what a restore would load)."""
    by_partition, _ = restore_partitions(bootstrap, group, range(partitions))
    return {u: rec for users in by_partition.values() for u, rec in users.items()}


def assert_state_matches(state: dict[str, HistoryRecord],
                         expected: dict[str, tuple[list[str], list[int]]]) -> None:
    """Same users, and per user the same items and timestamps in the same order."""
    assert set(state) == set(expected)
    wrong = {u: (list(state[u].items), exp[0]) for u, exp in expected.items()
             if (list(state[u].items), list(state[u].ts)) != exp}
    assert not wrong, f"{len(wrong)} users differ, e.g. {next(iter(wrong.items()))}"
