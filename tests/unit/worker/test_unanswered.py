"""What the worker's commits hold back for: every user still waiting, wherever it waits.

A user is unanswered while pending in the batcher, in the model stage, or in the
outbox part-way through a batch; `Worker._unanswered_marks` is what `Commits` is
given, so a stage left out of it would let a commit pass an unsent recommendation
(docs/RELIABILITY.md). The worker here is a shell holding the three real stages.
"""

from __future__ import annotations

import numpy as np

from streamrec.worker.app import Worker
from streamrec.worker.batcher import BatchItem, MicroBatcher
from streamrec.worker.model_stage import ModelJob, ModelStage
from tests.unit.worker.test_model_stage import FakeRecommender
from tests.unit.worker.test_outbox import Log, batch_job, outbox


def shell(batcher: MicroBatcher, stage: ModelStage, box: object) -> Worker:
    worker = Worker.__new__(Worker)  # the three stages only: no model, no Kafka
    worker.batcher, worker._model, worker._outbox = batcher, stage, box  # type: ignore[assignment]
    return worker


def test_commits_hold_below_the_lowest_unanswered_user_of_every_stage() -> None:
    batcher = MicroBatcher(max_batch=100, max_wait_ms=1000)
    batcher.add(0, "pending-a", offset=700, event_ts=1, now=0.0)
    batcher.add(3, "pending-b", offset=40, event_ts=1, now=0.0)  # lowest of partition 3
    stage = ModelStage(FakeRecommender(), k=2)  # type: ignore[arg-type]
    batch = [BatchItem(1, "in-model", event_ts=1, first_offset=60),  # lowest of 1
             BatchItem(0, "in-model-too", event_ts=1, first_offset=650)]
    box, _ = outbox(Log(), owned={0, 1}, slice_users=2)
    try:
        stage.submit(ModelJob(batch, np.array([[1, 2], [3, 4]]), np.array([2, 2])))
        assert stage.wait(5.0)
        box.put(batch_job(5))  # users 0 and 1 sent; u2-u4 (offsets 102-104) still out
        worker = shell(batcher, stage, box)
        # partition 0: outbox u2 (102) and u4 (104) below the model's 650, pending 700
        assert worker._unanswered_marks() == {0: 102, 1: 60, 3: 40}
        assert worker._unanswered_users() == 2 + 2 + 3
        box.send(everything=True)  # the outbox empty: the model stage's batch is lowest
        assert worker._unanswered_marks() == {0: 650, 1: 60, 3: 40}
        stage.take()
        assert worker._unanswered_marks() == {0: 700, 3: 40}
    finally:
        stage.close()
