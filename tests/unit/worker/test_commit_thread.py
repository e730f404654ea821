"""The commit protocol with a client whose commit may run on another thread
(confluent): the loop never waits for the broker's answer, the offsets are booked only
once it came, and a blocking commit (shutdown, rebalance) goes after the one in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

import pytest

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import TopicPartition
from streamrec.worker import commits as commits_module
from tests.unit.worker.test_commits import TP0, TP1, FakeConsumer, Rig

ANSWER_WAIT_S = 5.0  # far longer than any step of these tests


class GatedConsumer(FakeConsumer):
    """Commits from any thread; each commit waits for its answer (`answer()` answers the
    oldest one asked), then goes through, fails with `refuse` or raises `crash`. `log`
    has "asked N" and "committed N" (N: partition 0's offset) in the order they happen."""

    commits_from_any_thread = True

    def __init__(self, log: list[str]) -> None:
        super().__init__(log)
        self.asked: list[dict[TopicPartition, int]] = []  # every commit sent, answered or not
        self.threads: list[str] = []
        self.runners: list[threading.Thread] = []  # the thread of each commit, in order
        self.crash: Exception | None = None
        self._answers: list[threading.Event] = []
        self._lock = threading.Lock()

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        answer = threading.Event()
        with self._lock:
            self.asked.append(dict(offsets))
            self.threads.append(threading.current_thread().name)
            self.runners.append(threading.current_thread())
            self._answers.append(answer)
            self.log.append(f"asked {offsets.get(TP0)}")
        if not answer.wait(ANSWER_WAIT_S):
            raise AssertionError("the test never answered this commit")
        if self.crash is not None:
            raise self.crash
        super().commit(offsets)
        self.log[-1] = f"committed {offsets.get(TP0)}"  # FakeConsumer logged "consumer commit"

    def answer(self) -> None:
        """Answer the oldest commit not answered yet (waiting for it to be asked)."""
        deadline = time.monotonic() + ANSWER_WAIT_S
        while True:
            with self._lock:
                waiting = [a for a in self._answers if not a.is_set()]
                if waiting:
                    waiting[0].set()
                    return
            assert time.monotonic() < deadline, "no commit to answer"
            time.sleep(0.001)


def settled(rig: Rig) -> None:
    """Wait until the commit in flight has its answer (the thread is done)."""
    deadline = time.monotonic() + ANSWER_WAIT_S
    while rig.commits._in_flight is not None and not rig.commits._in_flight.done():
        assert time.monotonic() < deadline, "the commit thread did not finish"
        time.sleep(0.001)


def in_flight(consumed: dict[int, int]) -> Rig:
    """A rig whose commit of `consumed` was sent and is not answered yet."""
    rig = Rig(consumer=GatedConsumer)
    for partition, offset in consumed.items():
        rig.commits.consumed_up_to(partition, offset)
    rig.commits.update()  # due: the offsets are taken
    rig.commits.update()  # nothing unacknowledged: sent on the commit thread
    return asked(rig, 1)


def asked(rig: Rig, commits: int) -> Rig:
    """Wait until the commit thread has asked for `commits` commits in all."""
    deadline = time.monotonic() + ANSWER_WAIT_S
    while len(rig.consumer.asked) < commits:
        assert time.monotonic() < deadline, "no commit was sent"
        time.sleep(0.001)
    return rig


def test_the_loop_does_not_wait_for_the_answer_and_books_only_after_it() -> None:
    rig = in_flight({0: 10, 1: 7})
    c = rig.commits
    assert rig.consumer.threads == ["streamrec-commit"]
    assert rig.consumer.commits == []  # not answered, yet the loop goes on
    assert c.committed == {}
    # The commit point (the user cap) is when the offsets are sent, every record before
    # them acknowledged: a slow answer must not hold the cap back.
    assert rig.commit_points == 1
    c.consumed_up_to(0, 15)
    rig.next_interval()
    c.update()
    c.update()
    assert rig.consumer.asked == [{TP0: 10, TP1: 7}]  # one commit in flight at a time
    assert c.until_due() == float("inf")
    rig.consumer.answer()
    settled(rig)
    c.update()
    assert c.committed == {0: 10, 1: 7}
    assert rig.metrics.commits._value.get() == 1
    assert rig.commit_points == 1  # not again at the answer
    rig.next_interval()
    c.update()
    c.update()
    assert asked(rig, 2).consumer.asked == [{TP0: 10, TP1: 7}, {TP0: 15}]


def test_a_blocking_commit_goes_after_the_one_in_flight() -> None:
    rig = in_flight({0: 10})
    c = rig.commits
    c.consumed_up_to(0, 15)
    answers = threading.Thread(target=lambda: [rig.consumer.answer() for _ in range(2)])
    answers.start()  # the broker answers the one in flight, then the blocking one
    c.commit_now()
    answers.join()
    commits = [line for line in rig.log if line.startswith(("asked", "committed"))]
    assert commits == ["asked 10", "committed 10", "asked 15", "committed 15"]
    assert c.committed == {0: 15}
    assert rig.metrics.commits._value.get() == 2


def test_a_partition_given_up_while_its_commit_is_in_flight_is_not_booked() -> None:
    rig = in_flight({0: 10, 1: 7})
    c = rig.commits
    c.forget(1)
    rig.consumer.answer()
    settled(rig)
    c.update()
    assert c.committed == {0: 10}


def test_a_commit_in_flight_or_refused_is_what_the_watchdog_times() -> None:
    rig = in_flight({0: 10})
    c = rig.commits
    sent_at = rig.clock.now
    rig.clock.now += 30.0
    assert c.failing_since == sent_at  # unanswered for 30 s: a stall in the making
    assert "no answer" in c.last_error  # what the watchdog's verdict would say
    rig.consumer.refuse = 1
    rig.consumer.answer()
    settled(rig)
    c.update()
    assert rig.metrics.commit_failures._value.get() == 1
    assert c.committed == {}
    assert c.failing_since == rig.clock.now  # refused when booked
    refused_at = rig.clock.now
    rig.next_interval()
    c.update()
    c.update()  # taken again
    assert asked(rig, 2).consumer.asked == [{TP0: 10}, {TP0: 10}]
    assert c.failing_since == refused_at  # the first failure, not the new send
    rig.consumer.answer()
    settled(rig)
    c.update()
    assert c.committed == {0: 10}
    assert c.failing_since is None


def test_an_unanswered_commit_is_left_behind_after_the_bound(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(commits_module, "SETTLE_S", 0.05)
    rig = in_flight({0: 10})
    c = rig.commits
    c.consumed_up_to(0, 15)
    late = threading.Thread(target=lambda: [rig.consumer.answer() for _ in range(2)])
    with caplog.at_level(logging.WARNING):
        threading.Timer(0.3, late.start).start()  # both answered long after the bound
        c.commit_now()
    late.join()
    assert rig.consumer.asked == [{TP0: 10}, {TP0: 15}]
    assert c.committed == {0: 15}
    assert "not answered" in caplog.text
    c.update()  # the first one's late answer books nothing
    assert c.committed == {0: 15}
    assert rig.metrics.commits._value.get() == 1


def test_a_bug_inside_the_commit_thread_is_raised_on_the_loop() -> None:
    rig = in_flight({0: 10})
    rig.consumer.crash = ValueError("not a broker's answer")
    rig.consumer.answer()
    settled(rig)
    with pytest.raises(ValueError, match="not a broker"):
        rig.commits.update()
    assert rig.commits.committed == {}


def test_a_refusal_inside_the_commit_thread_is_not_raised() -> None:
    rig = in_flight({0: 10})
    rig.consumer.crash = KafkaClientError("the group is rebalancing", retriable=True)
    rig.consumer.answer()
    settled(rig)
    rig.commits.update()
    assert rig.metrics.commit_failures._value.get() == 1


def test_every_commit_runs_on_one_thread_started_once() -> None:
    """Not a thread per commit: starting one blocks the loop until the new thread runs
    (136-143 ms on a busy 2-core box)."""
    rig = in_flight({0: 10})
    c = rig.commits
    for n, offset in enumerate((15, 20), start=2):
        rig.consumer.answer()
        settled(rig)
        c.update()
        c.consumed_up_to(0, offset)
        rig.next_interval()
        c.update()
        c.update()
        asked(rig, n)
    rig.consumer.answer()
    settled(rig)
    c.update()
    assert c.committed == {0: 20}
    assert len(rig.consumer.runners) == 3
    assert len(set(rig.consumer.runners)) == 1
    runner = rig.consumer.runners[0]
    assert runner is not threading.current_thread()
    c.close()
    runner.join(ANSWER_WAIT_S)
    assert not runner.is_alive()
