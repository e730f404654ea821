"""A worker joins a group whose committed offsets were rewound far behind its changelog:
it serves (issue 21, section 4).

The first worker serves a backlog and stops; an admin tool commits offset 0 for every
partition of the (memberless) group while the changelog holds every user's state up to
the end; a new worker joins. That is the worst a crash can leave behind, and the
guarantees of docs/RELIABILITY.md cover it: every event is re-read, none is applied to
a history twice (each is at or below its user's stored offset), each is answered again
(default output is at-least-once), the group commits up to the end, and events that
come afterwards are served as usual.

With kafka-python 3.0.12 the new worker used to hang instead: at every start its first
JoinGroup goes out before the topic's metadata arrives, whose arrival makes the leader
rejoin at once; the replayed backlog keeps the loop polling for milliseconds, the rejoin
is answered after `poll` returned, and kafka-python never took that answer (REBALANCING
for good: no partitions, no heartbeats, every commit refused with
RebalanceInProgressError). The adapter now asks for that join again
(`kafka_io/kafka_python/consumer.py`); confluent-kafka served from the start. (Without
the fix the watchdog would stop the worker after `--max-stall-s`, exit 3, and a restarted
worker would hang the same way: stopping is no substitute for serving here.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.durability import WorkerProcess, wait_drained, worker_args
from tests.integration.helpers import consume_until, event, metric_sum, producer, scrape
from tests.integration.test_exactly_once_replay import rewind

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

USERS, EVENTS = 600, 6000  # enough backlog that the new worker is busy while it rejoins
SERVE_BOUND_S = 60.0  # the rewound backlog is re-read in about 5 s on the 2-core box
T0 = 1_700_000_000_000


def send_events(bootstrap: str, topic: str, first: int, count: int) -> None:
    send = producer(bootstrap)
    for n in range(first, first + count):
        key, value = event(f"user-{n % USERS}", f"i{n % 40 + 1}", T0 + n)
        send.send(topic, key=key, value=value)
    send.flush()
    send.close()


def test_a_worker_joining_with_offsets_rewound_behind_its_changelog_serves(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str], tmp_path: Path,
) -> None:
    send_events(kafka_bootstrap, topics["events"], 0, EVENTS)
    args = worker_args(kafka_bootstrap, tiny_checkpoint, topics)
    first = WorkerProcess(tmp_path / "first.log", args)
    try:
        wait_drained(kafka_bootstrap, topics["group"], topics["events"])
    finally:
        assert first.terminate() == 0, first.output()

    rewind(kafka_bootstrap, topics["group"], topics["events"])
    port = free_port()
    again = WorkerProcess(tmp_path / "again.log", [*args, "--metrics-port", str(port)])
    try:
        start = time.monotonic()
        wait_drained(kafka_bootstrap, topics["group"], topics["events"],
                     timeout_s=SERVE_BOUND_S)
        took = time.monotonic() - start
        samples = scrape(port)
        assert metric_sum(samples, "streamrec_events_replayed_total") == EVENTS
        # Events after the rewound backlog are served as usual.
        send_events(kafka_bootstrap, topics["events"], EVENTS, 30)
        fresh = {T0 + n for n in range(EVENTS, EVENTS + 30)}
        recs = consume_until(
            kafka_bootstrap, topics["recs"],
            lambda rs: fresh <= {json.loads(r.value)["event_ts"] for r in rs})
        assert fresh <= {json.loads(r.value)["event_ts"] for r in recs}
        assert again.alive(), again.output()
    finally:
        code = again.terminate()
    assert code == 0, again.output()
    print(f"rewound backlog of {EVENTS} events re-read and committed in {took:.1f}s")
