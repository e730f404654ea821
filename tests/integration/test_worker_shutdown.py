"""SIGTERM during load: the worker finishes its batch, commits, and exits 0.

Afterwards the committed offsets must cover only what was published: every event
below a partition's committed offset has a recommendation for its user that was
triggered by that event or a later one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.helpers import committed_offsets, consume_until, end_offsets, event, producer

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]


def test_sigterm_under_load_exits_zero_and_commits_only_published(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str],
    tmp_path: Path,
) -> None:
    stop = threading.Event()
    base_ts = int(time.time() * 1000)

    def produce() -> None:
        p = producer(kafka_bootstrap)
        n = 0
        while not stop.is_set():
            user = f"user-{n % 300}"
            key, value = event(user, f"i{1 + n % 40}", ts=base_ts + n)
            p.send(topics["events"], key=key, value=value)
            n += 1
            if n % 200 == 0:
                p.flush()
                time.sleep(0.05)
        p.flush()
        p.close()

    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli.main", "worker",
         "--bootstrap", kafka_bootstrap, "--model", str(tiny_checkpoint),
         "--events-topic", topics["events"], "--recommendations-topic", topics["recs"],
         "--dead-letter-topic", topics["dlq"], "--group-id", topics["group"],
         "--metrics-port", "-1", "--max-batch", "16", "--device", "cpu"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    producer_thread = threading.Thread(target=produce, daemon=True)
    producer_thread.start()
    try:
        consume_until(kafka_bootstrap, topics["recs"], lambda rs: len(rs) >= 300, timeout_s=120)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    finally:
        stop.set()
        producer_thread.join(timeout=30)
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "worker.log").read_text()
    assert code == 0, output[-3000:]

    committed = committed_offsets(kafka_bootstrap, topics["group"], topics["events"])
    ends = end_offsets(kafka_bootstrap, topics["events"])
    assert sum(committed.values()) > 0, "the worker committed nothing before stopping"
    events = consume_until(kafka_bootstrap, topics["events"],
                           lambda rs: len(rs) >= sum(ends.values()))
    recs = consume_until(kafka_bootstrap, topics["recs"], lambda rs: False, timeout_s=5)
    served: dict[str, int] = {}
    for r in recs:
        doc = json.loads(r.value)
        served[doc["user_id"]] = max(served.get(doc["user_id"], 0), doc["event_ts"])
    needed: dict[str, int] = {}
    for r in events:
        if r.offset < committed.get(r.partition, 0):
            doc = json.loads(r.value)
            needed[doc["user_id"]] = max(needed.get(doc["user_id"], 0), doc["ts"])
    missing = {u: ts for u, ts in needed.items() if served.get(u, -1) < ts}
    assert not missing, f"committed past unpublished events of {len(missing)} users"
