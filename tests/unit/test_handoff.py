"""One thread, started once, runs what a loop hands it: in order, never making the loop
wait, past a failing call, until closed."""

from __future__ import annotations

import logging
import threading

import pytest

from streamrec.common.handoff import Handoff

WAIT_S = 5.0


def test_calls_run_in_order_on_one_thread_and_submit_does_not_wait() -> None:
    handoff = Handoff("test-handoff")
    gate = threading.Event()
    ran: list[tuple[int, threading.Thread]] = []
    first = handoff.submit(
        lambda: gate.wait(WAIT_S) and ran.append((1, threading.current_thread())))
    rest = [handoff.submit(lambda n=n: ran.append((n, threading.current_thread())))
            for n in (2, 3)]
    assert ran == []  # the first call blocks its thread, not the caller
    assert not first.is_set()
    gate.set()
    assert all(done.wait(WAIT_S) for done in (first, *rest))
    assert [n for n, _ in ran] == [1, 2, 3]
    assert {thread for _, thread in ran} == {handoff.thread}
    assert handoff.thread is not threading.current_thread()
    assert handoff.thread.name == "test-handoff"
    assert handoff.thread.daemon
    handoff.close()
    handoff.thread.join(WAIT_S)
    assert not handoff.thread.is_alive()


def test_a_failing_call_is_logged_and_the_next_one_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    handoff = Handoff("test-handoff")
    ran: list[str] = []
    with caplog.at_level(logging.ERROR):
        failed = handoff.submit(lambda: 1 / 0)
        after = handoff.submit(lambda: ran.append("after"))
        assert failed.wait(WAIT_S)
        assert after.wait(WAIT_S)
    assert ran == ["after"]
    assert "a call handed to the test-handoff thread failed" in caplog.text
    assert "ZeroDivisionError" in caplog.text
    handoff.close()
