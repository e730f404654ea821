"""The poll loop's time away from its consumer, measured and read while it lasts.

`WorkerMetrics.poll_gap` exports it (`streamrec_poll_gap_max_seconds`,
`streamrec_poll_gap_seconds`); a paced model loader reads `away_s` to give way to a
loop that is late (`worker/reload.py`, `common/pacing.py`).
"""

from __future__ import annotations

import time

from prometheus_client import Gauge, Histogram


class PollGap:
    """The longest stretch the poll loop spent away from the consumer.

    While the loop is away nothing is fetched, no acknowledgement is counted and no
    batch is cut, for every partition at once: a latency spike no per-stage histogram
    shows whole. The loop calls `polling` as a poll starts and `polled` as it returns
    (their times also time the poll stage); a turn costs one comparison and one
    histogram observation (about a microsecond).
    """

    def __init__(self, gauge: Gauge, histogram: Histogram) -> None:
        self.gauge = gauge
        self.histogram = histogram  # every gap, for windows between two scrapes
        self.longest = 0.0
        self._returned: float | None = None  # when the last poll returned (perf_counter)
        self._in_poll = False

    def away_s(self) -> float:
        """Seconds the loop has been away from its consumer now: 0 while it polls and
        before its first poll. Read from other threads (a paced loader gives way)."""
        returned = self._returned
        if returned is None or self._in_poll:
            return 0.0
        return time.perf_counter() - returned

    def polling(self) -> float:
        """A poll starts now: note the gap since the last one returned; the time."""
        now = time.perf_counter()
        self._in_poll = True
        if self._returned is None:
            return now
        gap = now - self._returned
        self.histogram.observe(gap)
        if gap > self.longest:
            self.longest = gap
            self.gauge.set(gap)
        return now

    def polled(self) -> float:
        """A poll returned now; the time."""
        self._returned = time.perf_counter()
        self._in_poll = False
        return self._returned
