"""The watchdog's rules on a hand-driven clock: each wait that lasts `max_stall_s` is a
stall, and idleness (a quiet topic, a member with no partitions) never is."""

from __future__ import annotations

import threading

import pytest

from streamrec.worker.watchdog import Stall, Watchdog, Work

MAX = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def joined_watchdog(clock: Clock, partitions: int = 3) -> Watchdog:
    dog = Watchdog(MAX, "g", clock=clock)
    dog.joined(partitions)
    return dog


def test_a_worker_never_assigned_anything_stalls_after_max_stall_s(clock: Clock) -> None:
    dog = Watchdog(MAX, "g", clock=clock)
    clock.advance(MAX - 1)
    assert dog.check() is None
    clock.advance(1)
    stall = dog.check()
    assert stall is not None
    assert stall.seconds == MAX
    assert "assignment from group 'g'" in str(stall)
    assert str(stall).startswith("stalled: waited 60s for ")


def test_joined_with_no_partitions_is_idle_not_stalled(clock: Clock) -> None:
    dog = joined_watchdog(clock, partitions=0)  # more workers than partitions
    clock.advance(10 * MAX)
    assert dog.check() is None
    assert dog.waited_s() == 0
    assert "joined with 0 partitions" in dog.describe()


def test_a_rejoin_that_never_ends_stalls_counted_from_the_revocation(clock: Clock) -> None:
    dog = joined_watchdog(clock)
    clock.advance(5 * MAX)
    dog.left()
    clock.advance(MAX - 1)
    assert dog.check() is None
    dog.left()  # lost after revoked: the wait began at the first
    clock.advance(1)
    assert dog.check() is not None
    dog.joined(3)
    assert dog.check() is None


def test_a_quiet_topic_is_not_a_stall(clock: Clock) -> None:
    dog = joined_watchdog(clock)
    for _ in range(100):
        clock.advance(MAX)
        dog.work(Work())
        assert dog.check() is None


def test_records_available_and_none_consumed_is_a_stall(clock: Clock) -> None:
    dog = joined_watchdog(clock)
    clock.advance(2 * MAX)  # idle for long: the wait starts when the records appear
    dog.work(Work(available=5))
    clock.advance(MAX - 1)
    assert dog.check() is None
    assert dog.waited_s() == MAX - 1
    clock.advance(1)
    stall = dog.check()
    assert stall is not None
    assert "5 records available on assigned partitions" in stall.waiting_for


def test_progress_restarts_the_wait_while_work_keeps_coming(clock: Clock) -> None:
    dog = joined_watchdog(clock)
    dog.work(Work(available=1000, unanswered=40, unacknowledged=80))
    for _ in range(20):  # a long catch-up: always work, always progress
        clock.advance(MAX / 2)
        dog.progressed()
        assert dog.check() is None


@pytest.mark.parametrize("work", [Work(unanswered=3), Work(unacknowledged=7)],
                         ids=["model stage stuck", "acknowledgements never come"])
def test_work_in_hand_without_progress_is_a_stall(clock: Clock, work: Work) -> None:
    dog = joined_watchdog(clock)
    dog.work(work)
    clock.advance(MAX)
    stall = dog.check()
    assert stall is not None
    assert str(work) in stall.waiting_for


def test_work_that_went_away_is_forgotten(clock: Clock) -> None:
    dog = joined_watchdog(clock)
    dog.work(Work(available=1))
    clock.advance(MAX - 1)
    dog.work(Work())
    clock.advance(MAX)
    assert dog.check() is None
    dog.work(Work(available=1))  # a new wait starts now, not at the first
    clock.advance(MAX - 1)
    assert dog.check() is None


def test_a_commit_failing_for_max_stall_s_is_a_stall(clock: Clock) -> None:
    dog = joined_watchdog(clock)
    failing_since = clock.now
    for _ in range(int(MAX) - 1):
        clock.advance(1)
        dog.commits(failing_since, "RebalanceInProgressError")
        assert dog.check() is None
    clock.advance(1)
    stall = dog.check()
    assert stall is not None
    assert "RebalanceInProgressError" in stall.waiting_for
    dog.commits(None)  # a commit went through, or nothing waits to be committed
    assert dog.check() is None


def test_zero_turns_the_watchdog_off(clock: Clock) -> None:
    dog = Watchdog(0, "g", clock=clock)
    clock.advance(1e6)
    assert dog.check() is None


def test_the_watching_thread_reports_a_stall_once() -> None:
    dog = Watchdog(0.04, "g")  # real clock: never joined, so stalled after 40 ms
    seen: list[Stall] = []
    reported = threading.Event()

    def on_stall(stall: Stall) -> None:
        seen.append(stall)
        reported.set()

    dog.start(on_stall)
    assert reported.wait(5)
    dog.stop()
    assert len(seen) == 1
    assert "assignment" in seen[0].waiting_for
