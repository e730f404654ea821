"""`streamrec bench clients`: the relay on each Kafka adapter, side by side, in one run.

The relay of `runners.py` (consume a batch -> decode -> produce one record per
event, producer polled after each batch, commit after a flush once a second) is the
floor under the worker's latency, so it is what tells the adapters apart. Each run
is `latency.measure(target="relay")` at a fixed offered load: the relay on the
adapter under test, the paced event producer and the latency consumer (the probes)
on one adapter for every run, so only the relay differs. Adapters alternate within
each rate and the whole grid repeats `rounds` times, so a slow minute of the box
falls on both. Besides p50/p95/p99 it reports the relay's CPU per 1,000 events (from
/proc, first send to last arrival).

`poll_ms` may hold several poll timeouts of the relay: librdkafka's batch consume
waits for a full batch or its whole timeout, so the timeout is the knob that
separates a tuned confluent relay from a naive one.
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from streamrec.bench import latency as latency_run
from streamrec.bench.contenders import load_stream
from streamrec.bench.report import ROOT, append_section, broker, machine, table
from streamrec.bench.runners import RELAY_FETCH_WAIT_MS, RELAY_POLL_S
from streamrec.kafka_io.clients import resolve_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientsOptions:
    """What `bench clients` runs; defaults: 2 adapters x 2 rates x 2 rounds of 30 s."""

    clients: tuple[str, ...] = ("kafka-python", "confluent")
    rates: tuple[float, ...] = (1000.0, 1500.0)  # offered events/s
    seconds: float = 30.0
    rounds: int = 2
    poll_ms: tuple[float, ...] = (RELAY_POLL_S * 1000,)
    fetch_wait_ms: int = RELAY_FETCH_WAIT_MS
    partitions: int = 4  # as bench e2e's events topic
    probe_client: str | None = None  # the producer's and latency consumer's (None: env/auto)
    events: int = 50_000  # distinct events of the stream; the producer cycles through them
    warmup_s: float = 5.0  # the steady figures leave out events sent in the first seconds
    bootstrap: str | None = None
    workdir: Path = ROOT / ".cache" / "bench"


@dataclass(frozen=True)
class Run:
    """One relay run."""

    round: int
    rate: float
    client: str
    poll_ms: float
    sent: int
    received: int
    p50: float
    p95: float
    p99: float
    max: float
    p50_steady: float  # of the events sent after the warm-up
    p99_steady: float
    cpu_s: float
    seconds: float


def run(opts: ClientsOptions) -> list[Run]:
    """Every (round, rate, poll, client) relay run in order; appends the section."""
    opts.workdir.mkdir(parents=True, exist_ok=True)
    probe = resolve_client(opts.probe_client)
    clients = [resolve_client(c) for c in opts.clients]
    stream = load_stream(opts.events, users=30_000)
    runs: list[Run] = []
    with broker(opts.bootstrap) as bootstrap:
        grid = itertools.product(range(1, opts.rounds + 1), opts.rates, opts.poll_ms, clients)
        for rnd, rate, poll_ms, client in grid:
            say(f"round {rnd}: {client} relay (poll {poll_ms:g} ms) at {rate:,.0f} events/s "
                f"for {opts.seconds:.0f} s")
            lat = latency_run.measure(
                bootstrap, Path("."), stream, rate, opts.seconds, opts.partitions,
                opts.workdir, ["--poll-ms", str(poll_ms), "--fetch-wait-ms",
                               str(opts.fetch_wait_ms)],
                target="relay", client=client, probe_client=probe)
            one = Run(rnd, rate, client, poll_ms, lat.sent, len(lat.ms), lat.percentile(50),
                      lat.percentile(95), lat.percentile(99),
                      float(lat.ms.max()) if len(lat.ms) else float("nan"),
                      lat.percentile(50, opts.warmup_s), lat.percentile(99, opts.warmup_s),
                      lat.cpu_s, opts.seconds)
            say(f"  p50 {one.p50:.0f} ms, p99 {one.p99:.0f} ms, max {one.max:.0f} ms, "
                f"after {opts.warmup_s:g} s: p50 {one.p50_steady:.0f}, p99 {one.p99_steady:.0f}; "
                f"relay CPU {one.cpu_s / max(one.sent, 1) * 1000:.2f} s per 1k events")
            runs.append(one)
    (opts.workdir / f"clients-{int(time.time())}.json").write_text(
        json.dumps([r.__dict__ for r in runs], indent=2))
    append_section("bench clients (Kafka clients side by side)",
                   report(runs, opts, probe, machine()))
    return runs


def report(runs: list[Run], opts: ClientsOptions, probe: str, where: str) -> str:
    """The section: what ran, every run in order, then the summary per contender."""
    every = [[r.round, f"{r.rate:,.0f}", r.client, f"{r.poll_ms:g}", f"{r.sent:,}",
              f"{r.received:,}", f"{r.p50:.0f}", f"{r.p95:.0f}", f"{r.p99:.0f}",
              f"{r.max:.0f}", f"{r.p50_steady:.0f}", f"{r.p99_steady:.0f}",
              f"{r.cpu_s / max(r.sent, 1) * 1000:.2f}",
              f"{r.cpu_s / r.seconds:.0%}"] for r in runs]
    summary = []
    keys = dict.fromkeys((r.rate, r.poll_ms, r.client) for r in runs)
    for rate, poll_ms, client in keys:
        mine = [r for r in runs if (r.rate, r.poll_ms, r.client) == (rate, poll_ms, client)]
        summary.append([f"{rate:,.0f}", client, f"{poll_ms:g}",
                        " / ".join(f"{r.p50:.0f}" for r in mine),
                        " / ".join(f"{r.p99:.0f}" for r in mine),
                        " / ".join(f"{r.p99_steady:.0f}" for r in mine),
                        f"{statistics.median(r.cpu_s / max(r.sent, 1) * 1000 for r in mine):.2f}"])
    return "\n\n".join([
        f"Machine: {where}.",
        f"The relay (`benchmarks/runners.py relay`: batch poll of up to 1,024 records, one "
        f"record out per event, producer polled after each batch, flush + commit once a "
        f"second; `fetch.wait.max.ms` {opts.fetch_wait_ms}) on each adapter, "
        f"{opts.partitions} partitions, local single-node broker on the same machine, "
        f"{opts.seconds:.0f} s per run, adapters alternating, {opts.rounds} rounds. Probes "
        f"(paced event producer, linger 5 ms; latency consumer polling every "
        f"{latency_run.PROBE_POLL_S * 1000:g} ms) on {probe} in every run. Latency: produce "
        "to arrival at the consumer, ms. CPU: the relay process, first send to last "
        "arrival.",
        "Summary (per round, in order):\n\n" + table(
            ["offered events/s", "relay client", "relay poll ms", "p50", "p99",
             f"p99 after {opts.warmup_s:g} s", "relay CPU s / 1k events (median)"], summary),
        "Every run, in the order run:\n\n" + table(
            ["round", "offered events/s", "relay client", "poll ms", "sent", "received",
             "p50", "p95", "p99", "max", f"p50 after {opts.warmup_s:g} s",
             f"p99 after {opts.warmup_s:g} s", "CPU s / 1k events", "CPU"], every),
    ])


def say(text: str) -> None:
    """Progress on stdout: a run takes minutes."""
    print(f"[bench] {time.strftime('%H:%M:%S')} {text}", flush=True)
