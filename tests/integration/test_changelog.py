"""The histories changelog against the real broker: restore and `streamrec state dump`.

Records are written straight to a compacted changelog topic with a producer (as the
worker does), then read back the two ways they are read: a worker restoring its
partitions, and an operator running `streamrec state dump`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.errors import TopicNotFoundError
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.kafka_io.topic_reader import read_to_end
from streamrec.worker.state import changelog_read, durable, parallel_read
from streamrec.worker.state.changelog import (
    HistoryRecord,
    changelog_topic,
    encode_history,
)
from streamrec.worker.state.changelog_read import restore_partitions
from streamrec.worker.state.durable import DurableHistories
from tests.conftest import TOPIC_READY_TIMEOUT_MS
from tests.integration.helpers import producer

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

TS = 1_700_000_000_000
CLI_TIMEOUT_S = 180


def history(*items: str, offset: int) -> HistoryRecord:
    return HistoryRecord(items=items, ts=tuple(TS + i for i in range(len(items))), offset=offset)


# (partition, user, value): updates, a tombstone, a re-created user, a bad record.
SENDS: list[tuple[int, str, bytes | None]] = [
    (0, "alice", encode_history(history("i1", offset=0))),
    (0, "bob", encode_history(history("i2", offset=1))),
    (1, "carol", encode_history(history("i3", offset=0))),
    (0, "alice", encode_history(history("i1", "i4", offset=2))),
    (1, "dave", encode_history(history("i5", offset=1))),
    (0, "bob", None),  # tombstone: bob's history was deleted
    (1, "dave", None),
    (1, "dave", encode_history(history("i6", offset=5))),  # and dave came back
    (1, "carol", b"SRH\x07 a record of a future format"),  # undecodable: skipped
    (1, "émile", encode_history(history("日本", "i7", offset=6))),
]
EXPECTED = {
    0: {"alice": history("i1", "i4", offset=2)},
    1: {"carol": history("i3", offset=0), "dave": history("i6", offset=5),
        "émile": history("日本", "i7", offset=6)},
}


@pytest.fixture
def group(kafka_bootstrap: str, admin: KafkaAdminClient) -> Iterator[str]:
    """A fresh group id whose compacted changelog (2 partitions) holds `SENDS`."""
    group_id = f"group-{uuid.uuid4().hex[:8]}"
    topic = changelog_topic(group_id)
    admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"cleanup.policy": "compact"})])
    admin.wait_for_topics([topic], timeout_ms=TOPIC_READY_TIMEOUT_MS)
    p = producer(kafka_bootstrap)
    for partition, user, value in SENDS:
        p.send(topic, key=user.encode(), value=value, partition=partition)
    p.flush()
    p.close()
    yield group_id
    with contextlib.suppress(KafkaError):  # cleanup only: a leftover topic fails nothing
        admin.delete_topics([topic])


@pytest.fixture(params=[None, 1, 2], ids=["one-chunk", "chunks-of-1", "chunks-of-2"])
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int | None:
    """Restores read in chunks (`LatestRead`); with chunks of 1 or 2 users, a user's
    record, tombstone and return land in different chunks."""
    if request.param is not None:
        reader = functools.partial(changelog_read.LatestRead, chunk=request.param)
        monkeypatch.setattr(changelog_read, "LatestRead", reader)
    return request.param


@pytest.fixture(params=[(1, None), (1, 1), (1, 2), (2, None), (2, 1)],
                ids=["in-process", "in-process-chunks-of-1", "in-process-chunks-of-2",
                     "2-readers", "2-readers-chunks-of-1"])
def readers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The worker's restore read in-process or by reader processes (`parallel_read`),
    however small the changelog, in chunks of 1 or 2 users or in one."""
    count, chunk = request.param
    monkeypatch.setattr(parallel_read, "READER_MIN_RECORDS", 0)

    def read(*args: Any, **kwargs: Any) -> Any:
        kwargs["readers"] = count
        if chunk is not None:
            kwargs["chunk"] = chunk
        return parallel_read.latest_read(*args, **kwargs)

    monkeypatch.setattr(durable, "latest_read", read)
    return count


@pytest.mark.usefixtures("chunk")
def test_restore_keeps_the_latest_record_per_user_and_drops_tombstones(
    kafka_bootstrap: str, group: str,
) -> None:
    histories, stats = restore_partitions(kafka_bootstrap, group, [0, 1], timeout_s=60)

    assert histories == EXPECTED
    assert (stats.records, stats.users, stats.tombstones, stats.invalid) == (len(SENDS), 4, 2, 1)
    assert stats.seconds > 0


def test_the_workers_bulk_restore_loads_what_the_record_by_record_read_gives(
    kafka_bootstrap: str, group: str, readers: int, caplog: pytest.LogCaptureFixture,
) -> None:
    """`DurableHistories.restore` decodes in bulk; it must hold exactly EXPECTED, plus
    nothing for a user whose latest value has a valid header and a corrupt body, even
    when an earlier value of theirs was loaded from an earlier chunk; read in-process
    or by reader processes."""
    topic = changelog_topic(group)
    corrupt = encode_history(history("i1", "i2", offset=9))[:-1] + b"\xff\xff"  # bad length
    p = producer(kafka_bootstrap)
    p.send(topic, key=b"zoe", value=corrupt, partition=0)
    p.send(topic, key=b"yann", value=encode_history(history("i1", offset=3)), partition=0)
    p.send(topic, key=b"yann", value=corrupt, partition=0)  # his latest: he starts empty
    p.flush()
    p.close()
    vocab = ItemVocab(["i1", "i2", "i3", "i4", "i5", "i6", "i7", "日本"])
    state = DurableHistories(4, vocab, bootstrap=kafka_bootstrap, group_id=group,
                             security=KafkaSecurity())
    with caplog.at_level(logging.INFO, logger=parallel_read.__name__):
        restored = state.restore([0, 1])
    assert restored.users == 4
    assert (restored.records, restored.readers) == (len(SENDS) + 3, readers)
    spawned = [r.getMessage() for r in caplog.records if "reader processes" in r.getMessage()]
    assert spawned == ([] if readers == 1 else
                       ["restoring partitions [0, 1] with 2 reader processes: [(0,), (1,)]"])
    for partition, users in EXPECTED.items():
        store = state.store(partition)
        assert len(store) == len(users)
        for user, record in users.items():
            items, ts = store.history(user)
            assert vocab.external(items) == list(record.items)
            assert ts.tolist() == list(record.ts)
            assert store.applied_offset(user) == record.offset
    assert "zoe" not in state.store(0)
    assert "yann" not in state.store(0)


def test_restore_reads_only_the_partitions_asked_for(kafka_bootstrap: str, group: str) -> None:
    histories, stats = restore_partitions(kafka_bootstrap, group, [1], timeout_s=60)
    assert histories == {1: EXPECTED[1]}
    assert stats.records == sum(1 for p, _, _ in SENDS if p == 1)
    assert restore_partitions(kafka_bootstrap, group, [], timeout_s=60)[0] == {}


def test_restore_of_a_missing_changelog_or_partition_is_a_clear_error(
    kafka_bootstrap: str, group: str,
) -> None:
    with pytest.raises(TopicNotFoundError, match="does not exist"):
        restore_partitions(kafka_bootstrap, "no-such-group-here", [0], timeout_s=30)
    with pytest.raises(TopicNotFoundError, match="not \\[7\\]"):
        restore_partitions(kafka_bootstrap, group, [0, 7], timeout_s=30)


def test_read_to_end_stops_at_the_end_taken_at_start(kafka_bootstrap: str, group: str) -> None:
    topic = changelog_topic(group)
    seen: list[int] = []
    records = read_to_end(kafka_bootstrap, topic, client_id="test-reader", timeout_s=60,
                          progress=seen.append)
    first = next(records)
    p = producer(kafka_bootstrap)  # written after the read started: not part of it
    p.send(topic, key=b"late", value=encode_history(history("i9", offset=9)), partition=0)
    p.flush()
    p.close()
    rest = list(records)

    got = sorted((r.partition, r.offset) for r in [first, *rest])
    assert len(got) == len(SENDS)
    assert got == sorted(set(got))
    assert seen[-1] == len(SENDS)


def state_dump(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", "state", "dump", "--bootstrap", bootstrap,
         *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def expected_lines(only_user: str | None = None) -> list[dict]:
    return [
        {"user_id": user, "partition": partition, "items": list(h.items), "ts": list(h.ts),
         "offset": h.offset}
        for partition, users in sorted(EXPECTED.items()) for user, h in sorted(users.items())
        if only_user is None or user == only_user
    ]


def test_state_dump_prints_json_lines_sorted_by_partition_and_user(
    kafka_bootstrap: str, group: str,
) -> None:
    everything = state_dump(kafka_bootstrap, "--group-id", group)
    assert everything.returncode == 0, everything.stderr
    assert [json.loads(line) for line in everything.stdout.splitlines()] == expected_lines()

    one = state_dump(kafka_bootstrap, "--group-id", group, "--user", "émile")
    assert one.returncode == 0, one.stderr
    assert [json.loads(line) for line in one.stdout.splitlines()] == expected_lines("émile")

    deleted = state_dump(kafka_bootstrap, "--group-id", group, "--user", "bob")
    assert (deleted.returncode, deleted.stdout) == (0, "")

    part = state_dump(kafka_bootstrap, "--group-id", group, "--partition", "0")
    assert [json.loads(line) for line in part.stdout.splitlines()] == [
        line for line in expected_lines() if line["partition"] == 0]


def test_state_dump_without_a_changelog_says_so(kafka_bootstrap: str) -> None:
    result = state_dump(kafka_bootstrap, "--group-id", "no-such-group-here", "--timeout", "30")
    assert result.returncode == 2
    assert "no histories changelog for group 'no-such-group-here'" in result.stderr
    assert result.stdout == ""


def test_a_restore_logs_how_far_it_got(
    kafka_bootstrap: str, group: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(durable, "RESTORE_LOG_S", 0.0)  # every poll, not every 5 s
    state = DurableHistories(4, ItemVocab(["i1"]), bootstrap=kafka_bootstrap, group_id=group,
                             security=KafkaSecurity())
    with caplog.at_level(logging.INFO, logger=durable.__name__):
        state.restore([0, 1])
    said = [r.getMessage() for r in caplog.records if "changelog records read" in r.getMessage()]
    assert said
    assert said[-1].startswith(f"restoring partitions [0, 1]: {len(SENDS)} changelog records")
