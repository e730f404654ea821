"""`streamrec bench catalogue`: the worker end to end on a million-item catalogue.

Issue 22 asks two things of a catalogue a shop with a million products would have:
that a worker serving it answers within 1.5 times the p99 of the 24k-item games
model at half load, measured in the same run, and that hot-swapping a new version of
it stalls the poll loop 100 ms at most. Both use the games model and its item table
grown to `items` (`catalogue.py`; cached under the bench workdir), with the
approximate index the worker would choose stored beside it (`streamrec index build`),
so the worker reads it at load instead of training a quantizer.

1. The large model's worker (the slower one: its search is the longer) on the
   stream's first events read from offset 0 (`soak_rate.backlog_rate`), then its maximum
   live load (`capacity.py`, as bench e2e finds it): the highest rate of the latency
   runs' own stream it keeps up with, searched from `LIVE_FIRST` of the backlog's
   recommendations/s. The offered rate of every later run is `load` (half) of that
   maximum, so the p99s compare at one rate (or `rate`, given, and no search).
   Before 2026-12-06 the rate was half of the backlog's throughput, which folds a
   user's queued events into one recommendation and so overstates what a worker
   sustains live: on the 2-core Xeon the 1M-item worker was behind at that rate
   before any swap (p99 0.5-1.1 s).
2. `rounds` rounds of `latency.measure` at that rate, the two models alternating
   within each round, `seconds` each: p50/p95/p99, p99 of the events sent after
   the first `warmup_s`, and the ratio of the medians over rounds of the large
   model's p99 to the small one's.
3. The hot swap of `hot_swap.py`: a second version of the large model (grown with
   another seed, its own index) published and swapped in while events flow.

Appends a dated section to docs/BENCHMARKS.md (unless `report` is off) and keeps
the figures as JSON in the workdir.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streamrec.bench import capacity
from streamrec.bench import latency as latency_run
from streamrec.bench.contenders import Stream, bench_model, load_stream
from streamrec.bench.e2e import LIVE_FIRST, say
from streamrec.bench.hot_swap import SCRAPE_S, WINDOWS, SwapRun, hot_swap
from streamrec.bench.latency import Window
from streamrec.bench.report import ROOT, append_section, broker, machine, table
from streamrec.bench.soak_rate import backlog_rate
from streamrec.kafka_io.clients import resolve_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogueOptions:
    """What `bench catalogue` runs; the defaults are issue 22's run (about 17 minutes
    on 2 cores once the grown models and their indexes are cached)."""

    items: int = 1_000_000
    seconds: float = 30.0  # each latency run; the hot swap's windows before and after share it
    # Three, whose median is the verdict, as bench e2e's: one stall of the shared box in
    # a 30 s run sets that run's p99 (after 5 s, the games model's runs spread over
    # 33-174 ms and the 1M-item model's over 35-140 within one hour, docs/BENCHMARKS.md
    # 2026-12-07 21:20-22:47), and the median of two rounds is their mean.
    rounds: int = 3
    measure_events: int = 60_000  # events of each throughput run
    events: int = 100_000  # distinct events the latency runs cycle through
    users: int = 30_000  # synthetic stream only (when ../shared/data is absent)
    partitions: int = 4  # as bench e2e
    load: float = 0.5  # the fraction of the large model's maximum live load offered
    rate: float | None = None  # offered events/s; None: `load` of the maximum live load
    warmup_s: float = 5.0  # the steady p99 leaves out the events sent in the first seconds
    p99_factor: float = 1.5  # issue 22: the large model's p99 within this of the small one's
    swap_gap_s: float = 0.1  # issue 22: a hot swap stalls the loop at most this long
    kafka_client: str | None = None  # the workers' and the probes' (None: env, else auto)
    bootstrap: str | None = None
    report: bool = True  # append the section to docs/BENCHMARKS.md
    workdir: Path = ROOT / ".cache" / "bench"


@dataclass(frozen=True)
class Basis:
    """How the offered rate was found: the large model's backlog throughput and its
    maximum live load (`capacity.live_maximum`), with every probe."""

    items: int
    backlog: float  # recommendations/s (the lesser of events/s and recs/s) from offset 0
    live_max: float  # events/s; 0.0: no probe kept up
    probes: list[capacity.Probe]


@dataclass(frozen=True)
class Run:
    """One latency run of one model."""

    round: int
    model: str
    items: int
    sent: int
    whole: Window  # every recommendation that arrived
    steady: Window  # those whose event was sent after the warm-up


def run(opts: CatalogueOptions) -> dict:
    """Models, throughput, latency rounds and the hot swap; returns the figures."""
    opts.workdir.mkdir(parents=True, exist_ok=True)
    small = bench_model(None, opts.workdir, opts.users)
    large = grown(small, opts.items, opts.workdir, seed=0)
    second = grown(small, opts.items, opts.workdir, seed=1)
    models = {items_of(small): small, opts.items: large}
    stream = load_stream(max(opts.events, opts.measure_events), opts.users)
    client = resolve_client(opts.kafka_client)
    extra = ["--index", "auto", "--torch-threads", "1"]
    figures: dict = {"machine": machine(), "stream": stream.source, "client": client,
                     "options": {k: str(v) for k, v in dataclasses.asdict(opts).items()}}
    with broker(opts.bootstrap) as bootstrap:
        basis = None if opts.rate is not None else rate_basis(
            bootstrap, opts.items, large, stream, opts, extra, client)
        rate = opts.rate if basis is None else opts.load * (basis.live_max or basis.backlog)
        say(f"offering {rate:,.0f} events/s to every run")
        runs = [latency(bootstrap, rnd, items, model, stream, rate, opts, extra, client)
                for rnd in range(1, opts.rounds + 1) for items, model in models.items()]
        swap = hot_swap(bootstrap, large, second, stream, rate, opts.seconds, opts.warmup_s,
                        opts.partitions, opts.events, opts.workdir, extra, client)
    figures |= {"basis": None if basis is None else dataclasses.asdict(basis), "rate": rate,
                "runs": [dataclasses.asdict(r) for r in runs],
                "swap": dataclasses.asdict(swap) | {"gap_s": swap.gap_s}}
    out = opts.workdir / f"catalogue-{int(time.time())}.json"
    out.write_text(json.dumps(figures, indent=2, default=str))
    body = report(runs, swap, basis, rate, opts, client, figures["machine"], stream.source)
    for line in summary_lines(runs, swap, opts):
        say(line)
    if opts.report:
        append_section(f"bench catalogue ({opts.items:,} items beside "
                       f"{min(models):,}, {client})", body)
    else:
        say(f"no report written (--no-report); figures in {out}")
    return figures


def rate_basis(bootstrap: str, items: int, model: Path, stream: Stream,
               opts: CatalogueOptions, extra: list[str], client: str) -> Basis:
    """The large model's backlog throughput, then its maximum live load searched from
    `LIVE_FIRST` of it with latency runs of `opts.seconds`."""
    say(f"throughput of the worker on the {items:,}-item model")
    backlog = backlog_rate(bootstrap, model, stream, extra, client, opts.measure_events,
                           opts.partitions)
    say(f"the {items:,}-item worker's maximum live load")
    live, probes = capacity.live_maximum(
        lambda rate: latency_run.measure(bootstrap, model, stream, rate, opts.seconds,
                                         opts.partitions, opts.workdir, extra, client=client,
                                         probe_client=client),
        first=LIVE_FIRST * backlog, say=say)
    if not live:
        say(f"no probe kept up: offering {opts.load:.0%} of the backlog's throughput instead")
    return Basis(items, backlog, live, probes)


def grown(model: Path, items: int, workdir: Path, seed: int) -> Path:
    """The games model grown to `items` (cached), with its stored approximate index."""
    from streamrec.bench.catalogue import grow_checkpoint  # torch: not at the CLI's start
    from streamrec.index.build import AUTO_APPROXIMATE_ITEMS, AUTO_APPROXIMATE_KIND
    from streamrec.index.store import META_FILE

    out = workdir / (f"games-grown-{items}" + (f"-seed{seed}" if seed else ""))
    if not (out / "config.json").is_file():
        say(f"growing the item table of {model.name} to {items:,} items (seed {seed}) "
            f"into {out}")
    grow_checkpoint(model, items, out, seed=seed)
    meta = json.loads((out / META_FILE).read_text()) if (out / META_FILE).is_file() else {}
    if items >= AUTO_APPROXIMATE_ITEMS and not ({"truth", "nprobe_tuned"} <= meta.keys()
                                                and "rescore" in meta["params"]):
        # none, or stored before the exact answer, the nprobe chosen for its recall, or
        # the candidates re-scored (its nprobe was chosen for the codes' own scores)
        say(f"building its {AUTO_APPROXIMATE_KIND} index (streamrec index build; once)")
        subprocess.run([sys.executable, "-m", "streamrec.cli.main", "--log-level", "WARNING",
                        "index", "build", "--model", str(out), "--index",
                        AUTO_APPROXIMATE_KIND], check=True, stdout=subprocess.DEVNULL)
    return out


def items_of(model: Path) -> int:
    """How many items a checkpoint knows (its config.json)."""
    return int(json.loads((model / "config.json").read_text())["vocab_size"])


def latency(bootstrap: str, rnd: int, items: int, model: Path, stream: Stream, rate: float,
            opts: CatalogueOptions, extra: list[str], client: str) -> Run:
    """One `latency.measure` run of the worker on `model`."""
    say(f"round {rnd}: the {items:,}-item worker at {rate:,.0f} events/s for "
        f"{opts.seconds:g} s")
    lat = latency_run.measure(bootstrap, model, stream, rate, opts.seconds,
                              opts.partitions, opts.workdir, extra, client=client,
                              probe_client=client)
    one = Run(rnd, model.name, items, lat.sent, lat.summary(), lat.summary(opts.warmup_s))
    w = one.whole
    say(f"  p50 {w.p50:.0f} ms, p99 {w.p99:.0f} ms, after {opts.warmup_s:g} s "
        f"{one.steady.p99:.0f} ms, max {w.max:.0f} ms ({w.events:,} of {one.sent:,})")
    return one


def p99_ratios(runs: list[Run]) -> dict[str, float]:
    """The large model's p99 over the small one's, of the medians over rounds: all
    events, and those sent after the warm-up."""
    small, large = min(r.items for r in runs), max(r.items for r in runs)

    def median(items: int, part: str) -> float:
        return statistics.median(getattr(r, part).p99 for r in runs if r.items == items)

    return {key: median(large, part) / median(small, part)
            for key, part in (("p99", "whole"), ("p99_steady", "steady"))}


def summary_lines(runs: list[Run], swap: SwapRun, opts: CatalogueOptions) -> list[str]:
    """The two verdicts of issue 22, one line each (the swap's alone at `--rounds 0`)."""
    lines = [f"hot swap: {swap.verdict(opts.swap_gap_s)}"]
    if not runs:
        return lines
    ratios = p99_ratios(runs)
    worst = max(ratios.values())
    met = "met" if worst <= opts.p99_factor else "missed"
    return [f"p99 {max(r.items for r in runs):,} items / {min(r.items for r in runs):,}: "
            f"{ratios['p99']:.2f} (after {opts.warmup_s:g} s: {ratios['p99_steady']:.2f}): "
            f"{met} (target ≤ {opts.p99_factor:g})", *lines]


def report(runs: list[Run], swap: SwapRun, basis: Basis | None, rate: float,
           opts: CatalogueOptions, client: str, where: str, source: str) -> str:
    """The section of docs/BENCHMARKS.md."""
    from streamrec.index.build import AUTO_APPROXIMATE_ITEMS, AUTO_APPROXIMATE_KIND

    rows = [[r.round, f"{r.items:,}", f"{r.sent:,}", f"{r.whole.events:,}",
             *(f"{x:.0f}" for x in (r.whole.p50, r.whole.p95, r.whole.p99, r.steady.p99,
                                    r.whole.max))] for r in runs]
    offered = (offered_sentence(basis, rate, opts) if basis is not None else
               f"Every run offered {rate:,.0f} events/s (`--rate`).")
    return "\n\n".join([
        f"Machine: {where}.",
        f"`{command(opts, client)}`: workers `--index auto --torch-threads 1` (exact below "
        f"{AUTO_APPROXIMATE_ITEMS:,} items, `{AUTO_APPROXIMATE_KIND}` from there, read from "
        f"the checkpoint); the workers, the paced producer and the latency consumer on "
        f"{client}; a local single-node broker on the same machine, {opts.partitions} "
        f"partitions; events cycle through the first {opts.events:,} of {source}, `ts` = the "
        f"time of sending. {offered}",
        "Latency, produce to arrival at the consumer (ms), models alternating in each round "
        "(received: recommendations; a user's events pending together get one, so a slow "
        "patch leaves it a little under sent):\n\n"
        + table(["round", "items", "sent", "received", "p50", "p95", "p99",
                 f"p99 after {opts.warmup_s:g} s", "max"], rows),
        "Verdicts: " + "; ".join(summary_lines(runs, swap, opts)) + ".",
        swap_paragraph(swap, opts),
    ])


def offered_sentence(basis: Basis, rate: float, opts: CatalogueOptions) -> str:
    """How the offered rate was found, every probe named."""
    probes = capacity.describe(basis.probes)
    found = (f"its maximum live load {basis.live_max:,.0f} events/s" if basis.live_max else
             "no probe kept up, so the backlog's throughput instead")
    return (f"The {basis.items:,}-item worker's throughput from offset 0 (the lesser of "
            f"events/s and recommendations/s over the first {opts.measure_events:,} events): "
            f"{basis.backlog:,.0f}; its maximum live load (`capacity.py`: the stream offered "
            f"{opts.seconds:g} s at a rate, {capacity.RULE}; probes: {probes}): "
            f"{found}; every run offered {rate:,.0f} events/s, {opts.load:.0%} of it.")


def swap_paragraph(swap: SwapRun, opts: CatalogueOptions) -> str:
    """What the hot swap measured: the gap gauge as it rose, and the latency windows."""
    windows = [[name, f"{w.events:,}", *(f"{x:.0f}" for x in (w.p50, w.p95, w.p99, w.max))]
               for name, w in ((n, swap.windows[n]) for n in WINDOWS if n in swap.windows)]
    rises = (" (it rose at " + ", ".join(f"{t:g} s to {g * 1000:.0f} ms"
                                         for t, g in swap.gap_rises) + " after the request)"
             if swap.gap_rises else "")
    over = swap.gaps_over(opts.swap_gap_s)
    if swap.gap_bound_s is not None and over is not None:
        rises += (f"; `streamrec_poll_gap_seconds` from the request to just after the swap: "
                  f"{swap.gaps_during['+Inf']:,} gaps, {over} longer than "
                  f"{opts.swap_gap_s * 1000:.0f} ms, every one within "
                  f"{swap.gap_bound_s * 1000:.0f} ms")
    return (
        f"Hot swap at {swap.rate:,.0f} events/s: a worker serving the {opts.items:,}-item "
        f"model from a model repository; a second version (grown with another seed, its own "
        f"index) published and `POST /reload`; {swap.result} {swap.load_s:.1f} s after the "
        f"request (load on the loader thread, then the swap between two batches). "
        f"`streamrec_poll_gap_max_seconds` {swap.gap_before_s * 1000:.0f} ms before the "
        f"request, {swap.gap_loading_s * 1000:.0f} ms at the last scrape before the swap was "
        f"counted (every {SCRAPE_S:g} s), {swap.gap_after_s * 1000:.0f} ms after it{rises}; "
        f"`streamrec_stage_seconds{{stage=\"swap\"}}` {swap.swap_s * 1000:.0f} ms over "
        f"{swap.swaps} swap(s). Latency by the time the event was sent (before: from "
        f"{opts.warmup_s:g} s in to the request; during: the load and the swap):\n\n"
        + table(["window", "events", "p50", "p95", "p99", "max"], windows))


def command(opts: CatalogueOptions, client: str) -> str:
    """The command line that ran (the flags that shape the figures)."""
    return (f"streamrec bench catalogue --items {opts.items} --seconds {opts.seconds:g} "
            f"--rounds {opts.rounds} --measure-events {opts.measure_events} "
            f"--kafka-client {client}" + (f" --rate {opts.rate:g}" if opts.rate else ""))
