"""Stall detection: a worker that cannot join its group, commit, or make progress for
`--max-stall-s` says what it waited for and stops, so that a supervisor restarts it.

Idleness is not a stall. A worker waits without bound only in these three ways, each
measured from the moment the wait began:

- **not joined**: since it subscribed, or since its partitions were revoked or lost,
  no assignment arrived. A member given no partitions (more workers than partitions)
  is joined: both adapters hand the rebalance callback the whole assignment, an empty
  one included, so "joined with nothing" and "not joined" are told apart.
- **work without progress**: records are available on an assigned partition (its high
  watermark above the consumer's position), users wait for a recommendation, or sent
  records wait for their acknowledgement, and none of these moved: no record consumed,
  no batch published, nothing acknowledged, no changelog record restored. A topic with
  no new events has no work waiting, however long it stays quiet.
- **a failing commit**: offsets wait to be committed and every commit since the first
  failure failed (a broker refusal, a group that is rebalancing), or the commit in
  flight on its own thread has no answer (`Commits.failing_since`).

The loop reports what happens (`joined`, `left`, `progressed`, `work`, `commits`); a
thread asks `check()` every second or so (`start`), so a loop blocked inside a Kafka
client call is caught as well. The clock is injected: the unit tests drive it by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import Consumer

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # how often the watching thread checks (at most)
POSITION_TIMEOUT_S = 0.01  # a position not known at once counts as unknown


@dataclass(frozen=True)
class Stall:
    """How long the worker has waited, and for what."""

    seconds: float
    waiting_for: str

    def __str__(self) -> str:
        return f"stalled: waited {self.seconds:.0f}s for {self.waiting_for}"


@dataclass(frozen=True)
class Work:
    """What waits for the worker at one turn of its loop."""

    available: int = 0  # records above the consumer's position on assigned partitions
    unanswered: int = 0  # users waiting for their recommendation
    unacknowledged: int = 0  # records sent, their acknowledgement not yet in

    def __bool__(self) -> bool:
        return bool(self.available or self.unanswered or self.unacknowledged)

    def __str__(self) -> str:
        parts = [(self.available, "records available on assigned partitions"),
                 (self.unanswered, "users waiting for a recommendation"),
                 (self.unacknowledged, "records waiting for their acknowledgement")]
        return ", ".join(f"{n} {what}" for n, what in parts if n)


def records_available(consumer: Consumer) -> int:
    """Records above the consumer's position on its assigned partitions, as of the last
    fetch's high watermarks (a partition not fetched yet, or whose position is not
    known, counts 0). Positions, not the offsets of the records handed out: both
    clients move the position past transaction markers and aborted records, so a
    topic written in transactions is not mistaken for one with records waiting."""
    total = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            position = consumer.position(tp, POSITION_TIMEOUT_S)
        except KafkaClientError:
            continue
        if position is not None:
            total += max(0, high - position)
    return total


class Watchdog:
    """The three waits of a worker, and whether one has lasted `max_stall_s`."""

    def __init__(self, max_stall_s: float, group: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_stall_s = max_stall_s  # 0: never stalled
        self.group = group
        self._clock = clock
        now = clock()
        self._unjoined_since: float | None = now  # None: joined
        self._partitions = 0
        self._progress_at = now
        self._work = Work()
        self._work_since = now
        self._commit_failing_since: float | None = None
        self._commit_error = ""
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    # -- what the loop reports ---------------------------------------------------------

    def joined(self, partitions: int) -> None:
        """An assignment arrived (possibly empty): the worker is a member of the group."""
        self._unjoined_since = None
        self._partitions = partitions
        self._progress_at = self._clock()

    def left(self) -> None:
        """Partitions revoked or lost: the worker waits for its next assignment."""
        if self._unjoined_since is None:
            self._unjoined_since = self._clock()

    def progressed(self) -> None:
        """Records consumed, a batch published, acknowledgements or a restore chunk."""
        self._progress_at = self._clock()

    def work(self, work: Work) -> None:
        """What waits now; called on every turn of the loop."""
        if work and not self._work:
            self._work_since = self._clock()
        self._work = work

    def commits(self, failing_since: float | None, error: str = "") -> None:
        """Since when commits fail (None: the last one succeeded or nothing waits);
        on the same clock as this watchdog."""
        self._commit_failing_since = failing_since
        self._commit_error = error

    # -- the verdict ---------------------------------------------------------------------

    def waited_s(self) -> float:
        """How long the longest of the three waits has lasted so far (0: none)."""
        now = self._clock()
        waits = [0.0]
        unjoined, failing = self._unjoined_since, self._commit_failing_since  # read once
        if unjoined is not None:
            waits.append(now - unjoined)
        if failing is not None:
            waits.append(now - failing)
        if self._work:
            waits.append(now - max(self._work_since, self._progress_at))
        return max(waits)

    def check(self) -> Stall | None:
        """The wait that has lasted `max_stall_s`, if one has."""
        if self.max_stall_s <= 0:
            return None
        now = self._clock()
        unjoined, failing = self._unjoined_since, self._commit_failing_since  # read once
        if unjoined is not None:
            waited = now - unjoined
            if waited >= self.max_stall_s:
                return Stall(waited, f"an assignment from group {self.group!r} (not a member "
                                     "since it asked to join: no assignment, not even an "
                                     "empty one)")
        if failing is not None:
            waited = now - failing
            if waited >= self.max_stall_s:
                return Stall(waited, f"an offset commit to succeed (last error: "
                                     f"{self._commit_error})")
        work = self._work
        if work:
            waited = now - max(self._work_since, self._progress_at)
            if waited >= self.max_stall_s:
                return Stall(waited, f"progress on {work} (nothing consumed, "
                                     "published or acknowledged meanwhile)")
        return None

    def describe(self) -> str:
        """The group membership and the work waiting, for a log line."""
        since = self._unjoined_since  # read once: the loop's thread may change it
        membership = (f"joined with {self._partitions} partitions" if since is None else
                      f"not joined for {self._clock() - since:.0f}s")
        return f"{membership}; waiting: {self._work or 'nothing'}"

    # -- the watching thread -------------------------------------------------------------

    def start(self, on_stall: Callable[[Stall], None], every_s: float = CHECK_EVERY_S) -> None:
        """Check from a thread of its own until `stop()`; `on_stall` runs once."""
        if self.max_stall_s <= 0 or self._thread is not None:
            return
        every = min(every_s, self.max_stall_s / 4)

        def watch() -> None:
            while not self._done.wait(every):
                stall = self.check()
                if stall is not None:
                    on_stall(stall)
                    return

        self._thread = threading.Thread(target=watch, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the watching thread (the worker is closing)."""
        self._done.set()
