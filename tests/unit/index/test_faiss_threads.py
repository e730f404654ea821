"""FAISS's OpenMP thread count reaches the threads that search, not only the one that
set it (OpenMP keeps the count per thread: the worker searches on its model thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from streamrec.index import faiss_threads  # noqa: E402
from streamrec.index.ann import AnnIndex  # noqa: E402
from streamrec.index.faiss_index import FaissIndex  # noqa: E402
from streamrec.index.params import AnnParams  # noqa: E402


def on_new_thread(work: Callable[[], None]) -> int:
    """Run `work` on a fresh thread; that thread's OpenMP count afterwards."""
    seen: list[int] = []

    def run() -> None:
        work()
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0]


@pytest.fixture
def wanted() -> Iterator[int]:
    """A count no new thread has by default; the main thread's setting restored after."""
    before = faiss.omp_get_max_threads()
    count = on_new_thread(lambda: None) + 1
    yield count
    faiss_threads.set_threads(0)
    faiss.omp_set_num_threads(before)
    faiss_threads._local.__dict__.clear()


def table(items: int = 600, dim: int = 8) -> np.ndarray:
    out = np.random.default_rng(0).standard_normal((items + 1, dim)).astype(np.float32)
    out[0] = 0.0
    return out


@pytest.mark.parametrize("make", [
    lambda t: FaissIndex(t, device="cpu"),
    lambda t: AnnIndex(t, "ivf-sq8", AnnParams(nlist=8, nprobe=2), device="cpu"),
], ids=["flat", "ivf-sq8"])
def test_a_search_on_another_thread_runs_on_the_count_set(
        wanted: int, make: Callable[[np.ndarray], object]) -> None:
    t = table()
    index = make(t)
    faiss_threads.set_threads(wanted)
    assert faiss.omp_get_max_threads() == wanted  # the caller's own thread at once
    queries = t[1:5]
    assert on_new_thread(lambda: index.search(queries, 5)) == wanted  # type: ignore[attr-defined]


def test_zero_leaves_openmp_default(wanted: int) -> None:
    default = wanted - 1
    faiss_threads.set_threads(0)
    assert on_new_thread(faiss_threads.apply) == default


def test_a_threads_own_count_wins_over_the_process_one(wanted: int) -> None:
    t = table()
    index = FaissIndex(t, device="cpu")
    faiss_threads.set_threads(wanted)

    def own() -> None:
        faiss_threads.for_this_thread(wanted + 1)
        index.search(t[1:3], 5)

    assert on_new_thread(own) == wanted + 1
    assert on_new_thread(lambda: index.search(t[1:3], 5)) == wanted  # others keep it


def test_own_count_zero_is_every_core_this_process_may_use(wanted: int) -> None:
    import os

    faiss_threads.set_threads(wanted)
    assert on_new_thread(lambda: faiss_threads.for_this_thread(0)) == len(
        os.sched_getaffinity(0))
