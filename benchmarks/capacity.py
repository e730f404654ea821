"""The worker's maximum live load: the highest offered events/s it keeps up with.

"Half of its maximum load" needs the maximum on the stream the latency runs send.
A backlog does not say it: read from offset 0 the worker folds a user's queued
events into one recommendation, so its events/s exceed what it sustains live. The
stream of b' (every event its own recommendation) does not say it either: it holds
each user's first 5 events, while the latency runs replay the whole log, whose
histories grow to `max_len` and cost the model more per user.

So the bench offers the latency stream itself at a rate for a run as long as a
latency run and judges the end of it: a worker that keeps up answers the events
sent in the last `TAIL_S` within `KEEPS_UP_MS` at the median; one that falls
behind answers them later by how far it fell behind (seconds after a whole run at a
rate a few percent too high). The search steps by `STEP` from a first guess until
one rate is kept up with and the next is not, then tries the geometric middle of
the two once: the answer is within about 12% below the true maximum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from streamrec.bench.latency import Latency

KEEPS_UP_MS = 250.0  # median latency of the last seconds: a worker behind is seconds late
TAIL_S = 5.0  # the seconds at the end of a run whose events are judged
STEP = 1.25  # ratio between two tried rates
MAX_PROBES = 6
RULE = (f"kept up when the median latency of the last {TAIL_S:g} s is within "
        f"{KEEPS_UP_MS:g} ms")  # how a report words `judge`


@dataclass(frozen=True)
class Probe:
    """One tried rate and how the worker met it."""

    rate: float
    tail_p50: float  # ms: median latency of the events sent in the run's last TAIL_S
    kept_up: bool


def judge(lat: Latency) -> Probe:
    """Whether the worker kept up with `lat`'s offered rate, from the run's tail."""
    tail = lat.percentile(50, after_s=max(0.0, lat.seconds - TAIL_S))
    return Probe(lat.rate, tail, bool(tail == tail and tail <= KEEPS_UP_MS))


def describe(probes: list[Probe]) -> str:
    """Every probe for a report: "4,000 kept up (30 ms), 6,250 fell behind (900 ms)"."""
    return ", ".join(f"{p.rate:,.0f} {'kept up' if p.kept_up else 'fell behind'} "
                     f"({p.tail_p50:,.0f} ms)" for p in probes)


def live_maximum(run: Callable[[float], Latency], first: float,
                 say: Callable[[str], None] = print) -> tuple[float, list[Probe]]:
    """(the highest rate `run` kept up with, every probe), searching from `first`.

    `run(rate)` offers the stream at `rate` events/s and returns the latencies. 0.0
    when no tried rate was kept up with (MAX_PROBES all fell behind)."""
    probes: list[Probe] = []

    def attempt(rate: float) -> Probe:
        probe = judge(run(rate))
        say(f"live load {rate:,.0f} events/s: median of the last {TAIL_S:.0f} s "
            f"{probe.tail_p50:,.0f} ms, {'kept up' if probe.kept_up else 'fell behind'}")
        probes.append(probe)
        return probe

    rate = first
    while len(probes) < MAX_PROBES:
        if attempt(rate).kept_up:
            if any(not p.kept_up for p in probes):
                break
            rate *= STEP
        else:
            if any(p.kept_up for p in probes):
                break
            rate /= STEP

    def best() -> float:
        return max((p.rate for p in probes if p.kept_up), default=0.0)

    above = [p.rate for p in probes if not p.kept_up and p.rate > best()]
    if best() and above and len(probes) < MAX_PROBES:
        attempt(math.sqrt(best() * min(above)))
    return best(), probes
