"""Paced background work: a duty cycle only where a thread asked for one."""

from __future__ import annotations

import threading
import time

import pytest

from streamrec.common import pacing
from streamrec.encoder import vocab as vocab_module
from streamrec.encoder.vocab import ItemVocab


def spin(cpu_s: float) -> None:
    """Burn `cpu_s` of this thread's CPU with a pause point every 0.5 ms."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        mark = time.thread_time()
        while time.thread_time() - mark < 0.0005:
            pass
        pacing.pause()


def test_a_paced_thread_keeps_its_cpu_at_the_duty() -> None:
    start = time.perf_counter()
    with pacing.paced(0.25) as pacer:
        spin(0.1)
    wall = time.perf_counter() - start
    assert pacer.rested_s >= 0.3 * 0.9  # three times its CPU, less the last slice
    assert wall >= 0.1 + pacer.rested_s
    assert pacing.current() is None  # the block ended: unpaced again


def test_pause_is_free_where_no_one_asked_for_pacing() -> None:
    start = time.perf_counter()
    spin(0.05)
    assert time.perf_counter() - start < 0.5  # no rest (it would be 0.15 s at 0.25)
    assert pacing.current() is None


def test_pacing_belongs_to_the_thread_that_asked() -> None:
    seen: list[object] = []
    with pacing.paced(0.5) as outer:
        other = threading.Thread(target=lambda: seen.append(pacing.current()))
        other.start()
        other.join()
        with pacing.paced(0.1) as inner:
            assert pacing.current() is inner
        assert pacing.current() is outer
    assert seen == [None]


def test_a_duty_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="duty"):
        pacing.Pacer(0.0)


def test_a_large_vocabulary_is_built_with_pause_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """A paced loader rests while it builds a million-item vocabulary, not only after."""
    calls = []
    monkeypatch.setattr(vocab_module, "pause", lambda: calls.append(1))
    ItemVocab([str(i) for i in range(5 * vocab_module.LOOKUP_SLICE)])
    assert len(calls) == 5
