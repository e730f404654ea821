"""`streamrec bench e2e`: the whole pipeline beside its ceilings, in one run.

Preloads an events topic with a realistic stream (the Amazon Games log, users
interleaved, when ../shared/data is present, else the synthetic generator), reads it
from offset 0 with each contender of `contenders.py` (passthrough, worker, naive,
model stage, two workers), checks that every user's last event got a
recommendation, finds the highest rate the worker keeps up with live on the stream
the latency runs send (`capacity.py`), then measures latency at fixed fractions of
it, the worker beside the Kafka client's own floor at the same rate (`latency.py`), in
rounds whose medians are reported, and throughput against `--max-batch`. Every process
it starts (workers, runners, relays) runs on the Kafka adapter `kafka_client` names
(None: the environment's `STREAMREC_KAFKA_CLIENT`, else auto). Appends a dated section
with the machine, a table, ratios and plots to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streamrec.bench import capacity
from streamrec.bench import latency as latency_run
from streamrec.bench.contenders import (
    Result,
    Stream,
    as_dict,
    bench_model,
    distinct_rounds,
    load_stream,
    model_stage,
    preload,
    run_runner,
    run_workers,
    verify,
)
from streamrec.bench.report import ROOT, append_section, broker, link, machine, run_file, table
from streamrec.kafka_io.clients import resolve_client
from streamrec.worker.config import WorkerConfig

logger = logging.getLogger(__name__)

SETTLE_S = 5.0  # a latency run's first seconds, left out of its "after" p99
LIVE_FIRST = 0.5  # the maximum live load's first tried rate, as a fraction of b's recs/s


@dataclass(frozen=True)
class E2EOptions:
    """What `bench e2e` runs; defaults fit a 2-core machine in about ten minutes."""

    events: int = 300_000  # the games log has 287k: all of it
    users: int = 30_000  # synthetic stream only
    partitions: int = 4  # even split for two workers
    naive_events: int = 10_000  # the naive contender reads this prefix
    latency_seconds: float = 30.0
    latency_loads: tuple[float, ...] = (0.1, 0.25, 0.5)  # of the maximum live load
    # Runs of each load and target, in rounds (worker, relay at each load, round after
    # round): one 30 s run's p99 moves by about 2x between runs on the 2-core box.
    latency_repeats: int = 3
    sweep: tuple[int, ...] = (16, 64, 256, 1024)
    sweep_events: int = 60_000
    model: Path | None = None
    workdir: Path = ROOT / ".cache" / "bench"
    bootstrap: str | None = None
    worker_args: tuple[str, ...] = ()
    index: str = "auto"  # the workers' --index, and the model stage's
    threads: int = 1  # the workers' --torch-threads (their default), and d's first run
    kafka_client: str | None = None  # the adapter of every process started (None: env/auto)

    def __post_init__(self) -> None:
        if self.latency_repeats < 1:
            raise ValueError(f"latency_repeats must be >= 1, got {self.latency_repeats}")


def worker_max_batch(worker_args: list[str]) -> int:
    """The `--max-batch` the workers run with: d batches the stream as they do."""
    if "--max-batch" in worker_args:
        return int(worker_args[worker_args.index("--max-batch") + 1])
    return WorkerConfig(model_dir=Path(".")).max_batch


def run(opts: E2EOptions) -> dict:
    """Every contender, the latency run and the sweep; returns the figures."""
    opts.workdir.mkdir(parents=True, exist_ok=True)
    model = bench_model(opts.model, opts.workdir, opts.users)
    stream = load_stream(opts.events, opts.users)
    extra = [*opts.worker_args, "--index", opts.index, "--torch-threads", str(opts.threads)]
    client = resolve_client(opts.kafka_client)
    figures: dict = {"machine": machine(), "stream": stream.source, "events": len(stream),
                     "users": len(set(stream.users)), "partitions": opts.partitions,
                     "threads": opts.threads, "index": opts.index,
                     "max_batch": worker_max_batch(extra), "kafka_client": client,
                     "latency_seconds": opts.latency_seconds}
    with broker(opts.bootstrap) as bootstrap:
        topic = f"bench-events-{uuid.uuid4().hex[:6]}"
        say(f"preloading {len(stream):,} events ({figures['users']:,} users, {stream.source})")
        figures["preload_s"] = preload(bootstrap, topic, stream, opts.partitions)
        n = len(stream)
        results: dict[str, Result] = {}
        say(f"a: passthrough ({client} consume -> decode -> produce)")
        results["a"] = run_runner("passthrough", bootstrap, topic, n, client=client)
        say(f"b: the worker, default settings, on {client}")
        results["b"], out_b = run_workers("worker", bootstrap, topic, model, n, extra=extra,
                                          client=client)
        figures["b_users_missing"] = verify(bootstrap, out_b, stream)
        distinct = distinct_rounds(stream)
        figures["distinct_stream"], figures["distinct_events"] = distinct.source, len(distinct)
        topic_distinct = f"bench-distinct-{uuid.uuid4().hex[:6]}"
        # One partition: over several, the consumer reads one partition rounds ahead of
        # another, and two events of a user meet in the pending set after all.
        preload(bootstrap, topic_distinct, distinct, 1)
        say(f"b': the worker on {len(distinct):,} events of distinct users ({distinct.source})")
        results["b'"], out_distinct = run_workers("worker-distinct-users", bootstrap,
                                                  topic_distinct, model, len(distinct),
                                                  extra=extra, client=client)
        figures["b'_users_missing"] = verify(bootstrap, out_distinct, distinct)
        say(f"c: naive, one event at a time ({opts.naive_events:,} events)")
        results["c"] = run_runner("naive", bootstrap, topic, min(opts.naive_events, n), model,
                                  opts.threads, opts.index, client)
        for threads in dict.fromkeys((opts.threads, 1, os.cpu_count() or 1)):
            say(f"d: model stage alone, {threads} thread(s)")
            results[f"d{threads}"] = model_stage(stream, model, worker_max_batch(extra), threads,
                                                 opts.index)
        say(f"d': model stage alone on the stream of b', {opts.threads} thread(s)")
        results["d'"] = model_stage(distinct, model, worker_max_batch(extra), opts.threads,
                                    opts.index)
        say("e: two worker processes in one group")
        results["e"], out_e = run_workers("workers", bootstrap, topic, model, n, processes=2,
                                          extra=extra, client=client)
        figures["e_users_missing"] = verify(bootstrap, out_e, stream)
        for key, result in results.items():
            say(f"{key}: {result.events_per_s:,.0f} events/s, {result.recs_per_s:,.0f} recs/s")
        figures["results"] = {k: as_dict(r) for k, r in results.items()}
        # Fractions of the worker's maximum load on the stream the latency runs send
        # (capacity.py): neither b (a backlog, coalesced) nor b' (short histories) says it.
        live, probes = capacity.live_maximum(
            lambda rate: latency_run.measure(bootstrap, model, stream, rate,
                                             opts.latency_seconds, opts.partitions,
                                             opts.workdir, extra, client=client),
            first=LIVE_FIRST * results["b'"].recs_per_s, say=say)
        figures["live_max"] = live
        figures["live_probes"] = [vars(p) for p in probes]
        full = live or results["b'"].recs_per_s
        latencies = []
        for round_no in range(opts.latency_repeats):
            for load in opts.latency_loads:
                for target in ("worker", "relay"):
                    say(f"latency of the {target} at {load * full:,.0f} events/s ({load:.0%} "
                        f"of the maximum live load) for {opts.latency_seconds:.0f} s, round "
                        f"{round_no + 1} of {opts.latency_repeats}")
                    latencies.append((load, target, round_no, latency_run.measure(
                        bootstrap, model, stream, load * full, opts.latency_seconds,
                        opts.partitions, opts.workdir, extra if target == "worker" else [],
                        target=target, client=client)))
        figures["latency"] = [
            {"load": load, "target": target, "round": round_no, "rate": lat.rate,
             "sent": lat.sent, "received": len(lat.ms),
             **{f"p{q}": lat.percentile(q) for q in (50, 95, 99)},
             "p99_after": lat.percentile(99, after_s=SETTLE_S),
             "max": float(lat.ms.max()) if len(lat.ms) else float("nan")}
            for load, target, round_no, lat in latencies]
        figures["latency_medians"] = latency_medians(figures["latency"])
        figures["sweep"] = sweep(bootstrap, model, stream, opts, extra, client)
    (opts.workdir / f"e2e-{int(time.time())}.json").write_text(json.dumps(figures, indent=2))
    write_report(figures, [lat for _, target, round_no, lat in latencies
                           if target == "worker" and round_no == 0], results)
    missing = {k: figures[f"{k}_users_missing"] for k in ("b", "b'", "e")}
    failed = any(missing.values())
    if failed:
        print("[bench] FAILED: users without a recommendation for their last event: "
              + ", ".join(f"{k} {v}" for k, v in missing.items()), file=sys.stderr)
    return figures


def latency_medians(runs: list[dict]) -> list[dict]:
    """Per load and target, the median of its rounds' p50 and p99 after the first
    seconds, each round's p99 after them, and (worker rows) the ratio of the worker's
    median p99 to the relay's at that load."""
    import numpy as np

    groups: dict[tuple[float, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["load"], run["target"]), []).append(run)
    rows = [{"load": load, "target": target, "rounds": len(group),
             "p50": float(np.median([r["p50"] for r in group])),
             "p99_after": float(np.median([r["p99_after"] for r in group])),
             "p99_after_rounds": [r["p99_after"] for r in group]}
            for (load, target), group in groups.items()]
    relay = {row["load"]: row["p99_after"] for row in rows if row["target"] == "relay"}
    for row in rows:
        if row["target"] == "worker" and relay.get(row["load"]):
            row["ratio_to_relay"] = row["p99_after"] / relay[row["load"]]
    return rows


def sweep(bootstrap: str, model: Path, stream: Stream, opts: E2EOptions,
          extra: list[str], client: str | None = None) -> list[dict]:
    """Worker throughput against --max-batch on a prefix of the stream."""
    prefix = stream.head(opts.sweep_events)
    topic = f"bench-sweep-{uuid.uuid4().hex[:6]}"
    preload(bootstrap, topic, prefix, opts.partitions)
    rows = []
    for max_batch in opts.sweep:
        say(f"sweep: --max-batch {max_batch} over {len(prefix):,} events")
        result, _ = run_workers(f"mb{max_batch}", bootstrap, topic, model, len(prefix),
                                extra=[*extra, "--max-batch", str(max_batch)],
                                client=client)
        rows.append({"max_batch": max_batch} | as_dict(result))
    return rows


def say(text: str) -> None:
    """Progress on stdout: a run takes minutes."""
    print(f"[bench] {time.strftime('%H:%M:%S')} {text}", flush=True)


def write_report(figures: dict, worker_latencies: list[latency_run.Latency],
                 results: dict[str, Result]) -> None:
    """The dated section in docs/BENCHMARKS.md, with the two plots."""
    r = results
    rows = [[f"{k}: {v.name}", "-" if k.startswith("d") else f"{v.events_per_s:,.0f}",
             f"{v.recs_per_s:,.0f}",
             f"{v.seconds:.1f}", _per_k(v), f"{v.records_out / v.events:.2f}" if v.events
             else "-", f"{v.peak_rss_mb:,.0f}" if v.peak_rss_mb == v.peak_rss_mb else "-"]
            for k, v in r.items()]
    d_worker = r[f"d{figures['threads']}"]
    ratios = {
        "b / a (events/s)": r["b"].events_per_s / r["a"].events_per_s,
        "b / c": r["b"].events_per_s / r["c"].events_per_s,
        f"b / d{figures['threads']} (recommendations/s vs users/s at the workers' threads)":
            r["b"].recs_per_s / d_worker.recs_per_s,
        "e / b": r["e"].events_per_s / r["b"].events_per_s,
        "b' / d' (distinct users, nothing to coalesce: recommendations/s vs users/s)":
            r["b'"].recs_per_s / r["d'"].recs_per_s,
    }
    lat_rows = [[f"{x['load']:.0%}", f"{x['rate']:,.0f}", str(x.get("round", 0) + 1),
                 "worker" if x["target"] == "worker" else "relay (client floor)",
                 f"{x['sent']:,}", f"{x['received']:,}",
                 *(f"{x[f'p{q}']:.0f}" for q in (50, 95, 99)),
                 f"{x.get('p99_after', float('nan')):.0f}", f"{x['max']:.0f}"]
                for x in figures["latency"]]
    sweep_rows = [[s["max_batch"], f"{s['events_per_s']:,.0f}", f"{s['recs_per_s']:,.0f}",
                   f"{s['cpu_s'] / s['events'] * 1000:.2f}"] for s in figures["sweep"]]
    cdf_png, sweep_png = _plots(worker_latencies, figures["sweep"], figures["kafka_client"])
    body = "\n\n".join([
        f"Machine: {figures['machine']}.",
        f"Stream: {figures['events']:,} events of {figures['users']:,} users from "
        f"{figures['stream']}, interleaved, {figures['partitions']} partitions, local "
        "single-node broker on the same machine. Time from the first event consumed to the "
        f"last record acknowledged. Workers: `--index {figures['index']} --torch-threads "
        f"{figures['threads']}`; d is users/s of encode + search alone, in batches of "
        f"{figures['max_batch']:,} distinct users (the workers' `--max-batch`). Kafka client "
        f"of every process: {figures['kafka_client']}. b' and d' read another stream of the "
        f"same log, {figures['distinct_events']:,} events ({figures['distinct_stream']}, one "
        "partition), in which a user's next event comes a whole round later: none should "
        "meet in the worker's pending set (then the recs/s of b' equal its events/s).",
        table(["contender", "events/s", "recs/s", "seconds", "CPU s / 1k events",
               "records out / event", "peak RSS MB"], rows),
        "Ratios: " + "; ".join(f"{k} = {v:.2f}" for k, v in ratios.items()) + ". "
        "Users whose last event got no recommendation: "
        + ", ".join(f"{k} {figures[k + '_users_missing']}" for k in ("b", "b'", "e")) + ".",
        "Maximum live load: " + _live(figures) + ".",
        "Latency, produce to arrival at a consumer (ms), at fractions of the maximum "
        f"live load; \"after {SETTLE_S:.0f} s\" leaves out the events sent in a run's first "
        "seconds, which meet a process that has just started (the worker's and the "
        "relay's first fetches and batches). The relay is the Kafka client's floor at the "
        f"same rate: {figures['kafka_client']} consuming and producing one record per "
        "event, no model, no state:\n\n"
        + table(["load", "offered events/s", "round", "target", "sent", "received", "p50",
                 "p95", "p99", f"p99 after {SETTLE_S:.0f} s", "max"], lat_rows),
        _medians(figures["latency_medians"]),
        "Throughput against `--max-batch`:\n\n"
        + table(["max batch", "events/s", "recs/s", "CPU s / 1k events"], sweep_rows),
        f"![latency CDF]({link(cdf_png)}) ![throughput vs max batch]({link(sweep_png)})",
    ])
    append_section("bench e2e", body)


def _medians(rows: list[dict]) -> str:
    """The medians of the latency rounds, in words: the figures the targets stand on."""
    def one(row: dict) -> str:
        rounds = ", ".join(f"{x:.0f}" for x in row["p99_after_rounds"])
        return f"{row['p99_after']:.0f} ms ({rounds})"

    relay = {row["load"]: row for row in rows if row["target"] == "relay"}
    parts = [f"at {row['load']:.0%}, the worker {one(row)} against the relay's "
             f"{one(relay[row['load']])}: {row.get('ratio_to_relay', float('nan')):.1f} ×"
             for row in rows if row["target"] == "worker" and row["load"] in relay]
    n = max((row["rounds"] for row in rows), default=0)
    return (f"Medians over the {n} rounds (each round runs the worker and then the relay at "
            f"every load) of the p99 after {SETTLE_S:.0f} s, each round's in brackets: "
            + "; ".join(parts) + ".")


def _live(figures: dict) -> str:
    """The maximum live load and the probes that found it, in words."""
    probes = "; ".join(f"{p['rate']:,.0f} {'kept up' if p['kept_up'] else 'fell behind'} "
                       f"({p['tail_p50']:,.0f} ms)" for p in figures["live_probes"])
    found = (f"{figures['live_max']:,.0f} events/s" if figures["live_max"]
             else "not found (every tried rate fell behind: the latency runs use b's "
                  "recs/s instead)")
    return (f"{found}, the highest offered rate of the latency runs' stream at which "
            f"the worker answered the events of the last {capacity.TAIL_S:.0f} s within "
            f"{capacity.KEEPS_UP_MS:.0f} ms at the median, over runs of "
            f"{figures['latency_seconds']:.0f} s. Tried (median of the last seconds): "
            f"{probes}")


def _per_k(result: Result) -> str:
    if result.cpu_s != result.cpu_s:  # NaN: not measured (in-process model stage)
        return "-"
    return f"{result.cpu_s / result.events * 1000:.2f}"


def _plots(latencies: list[latency_run.Latency], sweep_rows: list[dict], client: str,
           ) -> tuple[Path, Path]:
    """The latency CDF and the throughput-by-batch plots of this run; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    for lat in latencies:
        if len(lat.ms):
            ms = np.sort(lat.ms)
            ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=f"{lat.rate:,.0f} events/s")
    ax.set_xscale("log")
    ax.set_xlabel("produce-to-arrival latency (ms)")
    ax.set_ylabel("fraction of recommendations")
    ax.set_title("worker latency CDF by offered load")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    cdf_png = run_file(f"latency_cdf-{client}")
    fig.savefig(cdf_png, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s["max_batch"] for s in sweep_rows], [s["events_per_s"] for s in sweep_rows],
            marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("--max-batch")
    ax.set_ylabel("events/s")
    ax.set_title("worker throughput against --max-batch")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    sweep_png = run_file(f"max_batch-{client}")
    fig.savefig(sweep_png, dpi=100)
    plt.close(fig)
    return cdf_png, sweep_png
