"""The rate `bench soak` offers: `load` (half) of the worker's maximum live load on
the soak's own stream, with every history as long as the soak makes it.

The soak cycles the stream's first `events` events, so within minutes every user's
history is the model's `max_len` items and costs the encoder the most per user. A
worker measured from empty state measures short histories instead: on 2026-12-06 a
soak at 5,278 events/s (half of bench e2e's maximum live load on the whole log) kept
up for 3.5 minutes, then fell behind as the histories filled. So each probe's group
starts from a changelog holding every user's history as the cycle leaves it (the
worker restores it before it serves), and `capacity.live_maximum` searches the rate
as bench e2e does, from `LIVE_FIRST` of a quick throughput run from offset 0.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streamrec.bench import capacity
from streamrec.bench import latency as latency_run
from streamrec.bench.contenders import Stream, preload, run_workers
from streamrec.bench.e2e import LIVE_FIRST, say
from streamrec.kafka_io.clients import ensure_topics, make_producer
from streamrec.kafka_io.partitioner import key_partition
from streamrec.worker.state.changelog import HistoryRecord, changelog_topic, encode_history

DAY_MS = 86_400_000  # the filled histories end a day before the probe's events


@dataclass(frozen=True)
class RateFinding:
    """How the soak's rate was found: the backlog's throughput, then the probes."""

    backlog: float  # events/s from offset 0 over the stream's first events (the first guess)
    live_max: float  # 0.0: no probe kept up
    probes: list[capacity.Probe]
    load: float
    probe_s: float
    max_len: int

    @property
    def rate(self) -> float:
        """`load` of the maximum live load, or of the backlog's rate when no probe kept up."""
        return self.load * (self.live_max or self.backlog)

    def sentence(self, events: int, measure_events: int) -> str:
        """The report's account of the rate, every probe named."""
        probes = capacity.describe(self.probes)
        found = (f"{self.live_max:,.0f} events/s" if self.live_max else
                 "none (no probe kept up), so the backlog's throughput instead")
        return (f"{self.load:.0%} of the worker's maximum live load with full histories "
                f"(`soak_rate.py`: each probe's worker restores every user's last "
                f"{self.max_len} items of the {events:,}-event cycle, then gets the cycle "
                f"for {self.probe_s:g} s at a rate, {capacity.RULE}; first "
                f"guess {LIVE_FIRST:.0%} of {self.backlog:,.0f} events/s from offset 0 over "
                f"the first {measure_events:,} events; probes: {probes}): {found}")


def cycled_histories(stream: Stream, events: int, max_len: int) -> dict[str, list[str]]:
    """Each user's last `max_len` items once the first `events` events of `stream` have
    been sent round and round: their items in the cycle's order, repeated."""
    per_user: dict[str, list[str]] = {}
    for user, item in zip(stream.users[:events], stream.items[:events], strict=True):
        per_user.setdefault(user, []).append(item)
    return {user: (items * -(-max_len // len(items)))[-max_len:]
            for user, items in per_user.items()}


def full_histories(model: Path, cycle: Stream) -> tuple[dict[str, list[str]], int]:
    """(`cycled_histories` of the whole `cycle` at `model`'s history length, that length)."""
    from streamrec.encoder.checkpoint import read_model_config  # torch: not at the CLI's start

    max_len = read_model_config(model).max_len
    return cycled_histories(cycle, len(cycle), max_len), max_len


def fill_changelog(bootstrap: str, group: str, histories: dict[str, list[str]],
                   partitions: int, client: str | None = None) -> None:
    """`group`'s changelog holding `histories`, each user in its events' partition, with
    no event offset applied (-1): the worker applies every event of the new topic."""
    topic = changelog_topic(group)
    ensure_topics(bootstrap, {topic: partitions}, configs={topic: {"cleanup.policy": "compact"}},
                  client=client)
    producer = make_producer(bootstrap, "bench-soak-fill", client=client, linger_ms=20,
                             batch_bytes=512 * 1024)
    base = int(time.time() * 1000) - DAY_MS
    try:
        for n, (user, items) in enumerate(histories.items()):
            key = user.encode()
            record = HistoryRecord(tuple(items), tuple(base + i for i in range(len(items))), -1)
            producer.send(topic, encode_history(record), key=key,
                          partition=key_partition(key, partitions))
            if n % 1000 == 0:
                producer.poll(0)  # delivery reports: librdkafka serves them only here
    finally:
        producer.close(120.0)


def find(bootstrap: str, model: Path, stream: Stream, extra: list[str], client: str, *,
         events: int, measure_events: int, partitions: int, load: float, probe_s: float,
         workdir: Path) -> RateFinding:
    """The backlog's throughput (the first guess), then the maximum live load of a worker
    whose histories are full, on the cycle of the stream's first `events` events."""
    backlog = backlog_rate(bootstrap, model, stream, extra, client, measure_events, partitions)
    cycle = stream.head(events)
    histories, max_len = full_histories(model, cycle)
    say(f"the worker's maximum live load with full histories ({len(histories):,} users, "
        f"{max_len} items each)")
    live, probes = capacity.live_maximum(
        lambda rate: latency_run.measure(
            bootstrap, model, cycle, rate, probe_s, partitions, workdir, extra, client=client,
            probe_client=client,
            prepare=lambda group: fill_changelog(bootstrap, group, histories, partitions,
                                                 client)),
        first=LIVE_FIRST * backlog, say=say)
    finding = RateFinding(backlog, live, probes, load, probe_s, max_len)
    say(f"offering {finding.rate:,.0f} events/s")
    return finding


def backlog_rate(bootstrap: str, model: Path, stream: Stream, extra: list[str], client: str,
                 events: int, partitions: int) -> float:
    """The worker's rate over the first `events` events of the stream read from offset 0
    (as bench e2e's b): the lesser of its events/s and recommendations/s."""
    prefix = stream.head(events)
    n = len(prefix)
    topic = f"bench-soak-rate-{uuid.uuid4().hex[:6]}"
    say(f"throughput run: the worker over {n:,} events from offset 0")
    preload(bootstrap, topic, prefix, partitions)
    result, _ = run_workers("soak-rate", bootstrap, topic, model, n, extra=extra, client=client)
    say(f"throughput: {result.events_per_s:,.0f} events/s, {result.recs_per_s:,.0f} recs/s")
    return min(result.events_per_s, result.recs_per_s)
