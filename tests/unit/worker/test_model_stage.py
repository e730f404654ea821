"""The model stage: one batch at a time, on its thread or inline on the caller's."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from streamrec.worker.batcher import BatchItem
from streamrec.worker.model_stage import (
    SWITCH_INTERVAL_S,
    ModelJob,
    ModelStage,
    switch_interval,
)


class FakeRecommender:
    """Records the thread each call ran on; `search` returns the histories' last rows."""

    def __init__(self, fail: bool = False) -> None:
        self.threads: list[int] = []
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def known(self, histories: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return histories, lengths

    def encode(self, histories: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.threads.append(threading.get_ident())
        self.release.wait(5)
        if self.fail:
            raise RuntimeError("encoder broke")
        return histories[:, -1:]

    def search(self, encoded: np.ndarray, histories: np.ndarray, k: int,
               full_histories: np.ndarray | None = None, fresh_slots: int = 0,
               ) -> np.ndarray:
        return np.repeat(encoded, k, axis=1)


def job(users: int) -> ModelJob:
    batch = [BatchItem(0, f"u{i}", event_ts=i) for i in range(users)]
    histories = np.arange(1, 3 * users + 1).reshape(users, 3)
    return ModelJob(batch, histories, np.full(users, 3))


def test_a_batch_runs_on_the_stage_thread_and_is_taken_once_done() -> None:
    model = FakeRecommender()
    model.release.clear()
    stage = ModelStage(model, k=2)  # type: ignore[arg-type]
    try:
        stage.submit(job(3))
        assert stage.busy
        assert stage.take(timeout_s=0.0) is None  # still encoding
        with pytest.raises(RuntimeError, match="holds a batch"):
            stage.submit(job(1))
        model.release.set()
        done = stage.take(timeout_s=5.0)
        assert done is not None
        assert not stage.busy
        assert model.threads == [stage._thread.ident]
        assert done.recs.tolist() == [[3, 3], [6, 6], [9, 9]]  # type: ignore[union-attr]
    finally:
        stage.close()


def test_the_stage_thread_searches_on_its_own_faiss_threads() -> None:
    faiss = pytest.importorskip("faiss")
    from streamrec.index import faiss_threads

    seen: list[int] = []

    class Searching(FakeRecommender):
        def search(self, *args: object, **kwargs: object) -> np.ndarray:
            faiss_threads.apply()  # what every FAISS index does before it searches
            seen.append(faiss.omp_get_max_threads())
            return super().search(*args, **kwargs)  # type: ignore[arg-type]

    before = faiss.omp_get_max_threads()
    faiss_threads.set_threads(1)  # the process's count (--torch-threads)
    stage = ModelStage(Searching(), k=1, search_threads=3)  # type: ignore[arg-type]
    try:
        stage.submit(job(2))
        assert stage.take(timeout_s=5.0) is not None
        assert seen == [3]
        other: list[int] = []  # any other thread keeps the process's count
        thread = threading.Thread(target=lambda: (faiss_threads.apply(),
                                                  other.append(faiss.omp_get_max_threads())))
        thread.start()
        thread.join()
        assert other == [1]
    finally:
        stage.close()
        faiss_threads.set_threads(0)
        faiss.omp_set_num_threads(before)
        faiss_threads._local.__dict__.clear()  # this thread's record of what it was given


def test_an_inline_batch_is_finished_on_the_callers_thread_when_submit_returns() -> None:
    model = FakeRecommender()
    stage = ModelStage(model, k=1)  # type: ignore[arg-type]
    try:
        stage.submit(job(2), inline=True)
        assert model.threads == [threading.get_ident()]
        done = stage.take(timeout_s=0.0)
        assert done is not None
        assert done.recs.tolist() == [[3], [6]]
        stage.submit(job(1))  # the stage is free again, and its thread still serves
        assert stage.take(timeout_s=5.0) is not None
        assert model.threads[-1] == stage._thread.ident
    finally:
        stage.close()


@pytest.mark.parametrize("inline", [False, True])
def test_an_error_in_the_model_is_raised_by_take(inline: bool) -> None:
    stage = ModelStage(FakeRecommender(fail=True), k=1)  # type: ignore[arg-type]
    try:
        stage.submit(job(1), inline=inline)
        with pytest.raises(RuntimeError, match="encoder broke"):
            stage.take(timeout_s=5.0)
        assert not stage.busy
    finally:
        stage.close()


def test_the_stage_shortens_the_gil_switch_interval_for_confluent_only() -> None:
    # At Python's 5 ms every return from a torch call can wait that long for the loop;
    # kafka-python's own network thread is Python, and a short interval hurt it.
    before = sys.getswitchinterval()
    try:
        for client, expected in (("kafka-python", 0.005), ("confluent", SWITCH_INTERVAL_S)):
            sys.setswitchinterval(0.005)
            stage = ModelStage(FakeRecommender(), k=1,  # type: ignore[arg-type]
                               switch_interval_s=switch_interval(client))
            stage.close()
            assert sys.getswitchinterval() == pytest.approx(expected)
    finally:
        sys.setswitchinterval(before)


def test_wait_returns_when_the_batch_is_done_and_not_before() -> None:
    model = FakeRecommender()
    model.release.clear()
    stage = ModelStage(model, k=1)  # type: ignore[arg-type]
    try:
        assert not stage.wait(0.0)  # nothing in the stage
        stage.submit(job(2))
        assert not stage.wait(0.05)  # still encoding: the wait times out
        model.release.set()
        assert stage.wait(5.0)
        assert stage.busy  # waiting does not take the job
        assert stage.take() is not None
    finally:
        stage.close()


def test_keep_drops_the_users_of_lost_partitions_from_every_part_of_the_job() -> None:
    from streamrec.worker.recommend import Recommendations

    done = job(3)
    done.recs = Recommendations(rows=np.array([[1], [2], [3]]), scores=np.zeros((3, 1)),
                                popular=np.array([False, True, False]),
                                attention=np.arange(9.0).reshape(3, 3))
    done.keep([True, False, True])
    assert [b.user_id for b in done.batch] == ["u0", "u2"]
    assert done.histories.tolist() == [[1, 2, 3], [7, 8, 9]]
    assert done.recs.rows.tolist() == [[1], [3]]
    assert done.recs.popular.tolist() == [False, False]
    assert done.recs.attention.tolist() == [[0, 1, 2], [6, 7, 8]]
    kept = done.recs
    done.keep([True, True])
    assert done.recs is kept  # nothing lost: nothing copied
