"""The bounded way out: `ExitGuard` ends the process once its bound passes (logging what
it abandoned), and `forward_signals` handles a signal on a thread of its own, whatever
the main thread is doing. The exit is a recording stand-in here; the real one is
checked against worker processes in tests/integration/test_never_hang.py."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from streamrec.worker.shutdown import EXIT_ABANDONED, ExitGuard, forward_signals


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.done = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.done.set()


def test_an_armed_guard_exits_once_its_bound_has_passed(caplog: pytest.LogCaptureFixture) -> None:
    exits = Exits()
    guard = ExitGuard(0.2, describe=lambda: "closing the producer; 3 records unacknowledged",
                      exit_now=exits)
    start = time.monotonic()
    with caplog.at_level(logging.ERROR):
        guard.arm("SIGTERM")
        guard.arm("closing the Kafka clients", 3)  # the first reason and code stay
        assert exits.done.wait(5)
    assert 0.2 <= time.monotonic() - start < 2
    assert exits.codes == [EXIT_ABANDONED]
    assert "SIGTERM: still not out after 0.2s" in caplog.text
    assert "abandoning: closing the producer; 3 records unacknowledged" in caplog.text


def test_an_unarmed_guard_never_exits() -> None:
    exits = Exits()
    guard = ExitGuard(0.05, exit_now=exits)
    assert not exits.done.wait(0.3)
    assert not guard.armed


def test_a_guard_disarmed_before_its_bound_never_exits() -> None:
    """The run returned in time: a worker command run inside a longer-lived process
    (the in-process CLI of the tests) must not end that process 30 s later."""
    exits = Exits()
    guard = ExitGuard(0.1, exit_now=exits)
    guard.arm("closing the Kafka clients")
    guard.disarm()
    assert not exits.done.wait(0.5)


def test_abandon_exits_even_when_the_state_cannot_be_described(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exits = Exits()

    def broken() -> str:
        raise RuntimeError("dictionary changed size during iteration")

    with caplog.at_level(logging.ERROR):
        ExitGuard(30, describe=broken, exit_now=exits).abandon("SIGINT after SIGTERM", 130)
    assert exits.codes == [130]
    assert "could not tell" in caplog.text


def test_a_signal_is_handled_on_the_forwarding_thread() -> None:
    seen: list[tuple[int, str]] = []
    handled = threading.Event()

    def handler(signum: int) -> None:
        seen.append((signum, threading.current_thread().name))
        handled.set()

    undo = forward_signals({signal.SIGUSR1: handler})
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handled.wait(5)
    finally:
        undo()
    assert seen == [(signal.SIGUSR1, "signals")]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # put back
