"""The outbox: a finished batch goes out a slice per loop turn, its unsent users held
against commits, its changelog after its last slice, nothing of a lost partition."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streamrec.worker.batcher import BatchItem
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.model_stage import ModelJob
from streamrec.worker.outbox import Outbox
from streamrec.worker.recommend import Recommendations

K, WIDTH = 3, 4


class Log:
    """What the publisher and the state were asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def send_recommendations(self, batch: list[BatchItem], recs: Recommendations,
                             histories: np.ndarray, ids: Any, version: str,
                             explain_top: int) -> None:
        assert len(recs.rows) == len(histories) == len(batch)
        self.calls.append(("recs", [b.user_id for b in batch], recs.rows[:, 0].tolist(),
                           version))

    def recommended(self, users: list[tuple[int, str]], rows: np.ndarray) -> None:
        self.calls.append(("recommended", [u for _, u in users]))

    def write_changes(self, publisher: Any, changes: list[Any], owned: set[int]) -> int:
        self.calls.append(("changes", list(changes), set(owned)))
        return len(changes)

    def sent_users(self) -> list[str]:
        return [u for call in self.calls if call[0] == "recs" for u in call[1]]


def batch_job(users: int, partitions: int = 2) -> ModelJob:
    """A finished batch: user i in partition i % partitions, first offset 100 + i, its
    recommendation's first row i (so a row is traced back to its user)."""
    batch = [BatchItem(partition=i % partitions, user_id=f"u{i}", event_ts=i,
                       first_offset=100 + i) for i in range(users)]
    rows = np.arange(users)[:, None] + np.zeros((1, K), dtype=np.int64)
    recs = Recommendations(rows=rows, scores=np.ones((users, K), np.float32),
                           popular=np.zeros(users, bool),
                           attention=np.zeros((users, WIDTH), np.float32))
    return ModelJob(batch, np.ones((users, WIDTH), np.int64), np.full(users, WIDTH),
                    changes=["the batch's changes"], recs=recs, encode_s=0.01,
                    search_s=0.02)


def outbox(log: Log, owned: set[int], slice_users: int = 256,
           version: list[str] | None = None) -> tuple[Outbox, WorkerMetrics]:
    metrics = WorkerMetrics()
    state = SimpleNamespace(items=SimpleNamespace(ids=None), recommended=log.recommended,
                            write_changes=log.write_changes)
    versions = version or ["v1"]
    box = Outbox(log, state, metrics, lambda: owned,  # type: ignore[arg-type]
                 lambda: SimpleNamespace(model_version=versions[0]),  # type: ignore[arg-type]
                 explain_top=2, slice_users=slice_users)
    return box, metrics


def observed(metrics: WorkerMetrics, stage: str) -> float:
    return metrics.registry.get_sample_value("streamrec_stage_seconds_count",
                                             {"stage": stage}) or 0.0


def test_a_batch_goes_out_a_slice_per_send_and_its_changes_after_the_last() -> None:
    log = Log()
    box, metrics = outbox(log, owned={0, 1})
    box.put(batch_job(600))
    assert log.sent_users() == [f"u{i}" for i in range(256)]  # the first slice only
    assert box.busy
    assert box.users == 344
    box.send()
    assert len(log.sent_users()) == 512
    assert box.users == 88
    assert not [c for c in log.calls if c[0] == "changes"]  # not before the last slice
    box.send()
    assert not box.busy
    assert box.users == 0
    assert log.sent_users() == [f"u{i}" for i in range(600)]  # each once, in batch order
    # every recommendation went with its own user's row
    assert [r for c in log.calls if c[0] == "recs" for r in c[2]] == list(range(600))
    assert log.calls[-1] == ("changes", ["the batch's changes"], {0, 1})
    assert [c[0] for c in log.calls].count("changes") == 1
    # encode and search are the batch's (observed once), publish one per slice
    assert (observed(metrics, "encode"), observed(metrics, "search")) == (1.0, 1.0)
    assert observed(metrics, "publish") == 3.0
    box.send()  # an empty outbox sends nothing
    assert len(log.calls) == 7


def test_the_users_not_sent_yet_hold_the_commit_below_their_first_offsets() -> None:
    log = Log()
    box, _ = outbox(log, owned={0, 1}, slice_users=10)
    assert box.low_watermarks({0: 500}) == {0: 500}  # empty: marks as they were
    box.put(batch_job(25))
    # users 10-24 are unsent: partition 0's lowest is u10 (offset 110), partition 1's u11
    assert box.low_watermarks({}) == {0: 110, 1: 111}
    assert box.low_watermarks({0: 105, 1: 200}) == {0: 105, 1: 111}  # lower marks stay
    box.send()
    assert box.low_watermarks({}) == {0: 120, 1: 121}
    box.send()
    assert box.low_watermarks({}) == {}


def test_everything_sends_the_rest_at_once() -> None:
    log = Log()
    box, _ = outbox(log, owned={0, 1}, slice_users=10)
    box.put(batch_job(25))
    box.send(everything=True)
    assert not box.busy
    assert log.sent_users() == [f"u{i}" for i in range(25)]
    log2 = Log()
    box2, _ = outbox(log2, owned={0, 1}, slice_users=10)
    box2.put(batch_job(25), everything=True)
    assert not box2.busy
    assert len(log2.sent_users()) == 25
    assert log2.calls[-1][0] == "changes"


def test_a_slice_drops_the_users_of_a_partition_lost_since_the_batch_came_in() -> None:
    log = Log()
    owned = {0, 1}
    box, _ = outbox(log, owned=owned, slice_users=4)
    box.put(batch_job(10))
    owned.discard(1)  # lost between two slices
    box.send()
    box.send()
    assert log.sent_users() == ["u0", "u1", "u2", "u3", "u4", "u6", "u8"]
    assert log.calls[-1] == ("changes", ["the batch's changes"], {0})


def test_the_batch_carries_the_version_of_the_model_that_was_serving_when_it_came_in() -> None:
    log = Log()
    versions = ["v1"]
    box, _ = outbox(log, owned={0, 1}, slice_users=4, version=versions)
    box.put(batch_job(6))
    versions[0] = "v2"
    box.send()
    assert {c[3] for c in log.calls if c[0] == "recs"} == {"v1"}


def test_a_second_batch_is_refused_while_one_is_going_out() -> None:
    log = Log()
    box, _ = outbox(log, owned={0, 1}, slice_users=4)
    box.put(batch_job(6))
    with pytest.raises(RuntimeError, match="holds a batch"):
        box.put(batch_job(2))
    with pytest.raises(ValueError, match="slice_users"):
        outbox(log, owned={0}, slice_users=0)
