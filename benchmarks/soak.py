"""`streamrec bench soak`: the worker at half its measured load for minutes, restarted midway.

What a short benchmark cannot show: memory that creeps, lag that builds, a tail
that widens, and what a restart costs. A real worker process runs against a real
broker (a local one unless `bootstrap` is given), as in `bench e2e`, while this
process produces events at a steady rate (`eventlog.replay`, `ts` = the time of
sending, cycling through the first `events` events of the e2e stream) and the
latency consumer of `latency.py` reads the recommendations in another process.
The rate is `--rate`, or `load` (half) of the worker's maximum live load on this
stream with its histories full, found first (`soak_rate.py`). At `restart_at` of
the run the worker gets SIGTERM and, once it has exited, starts again in the same
group (same instance id: it restores its users from the changelog). Every
`sample_s` the worker's RSS and CPU (utime + stime) are read from /proc and its lag,
pending users and users from /metrics; `soak_report.py` adds each window's p99,
judges growth and writes the CSV, the plot and the section of docs/BENCHMARKS.md.
The producer's and the latency consumer's CPU are reported too: on a small box they
compete with the worker.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamrec.bench import report, soak_rate, soak_report
from streamrec.bench.contenders import (
    Stream,
    bench_model,
    client_env,
    load_stream,
    proc_cpu_s,
    proc_rss_mb,
    scrape,
    worker_command,
)
from streamrec.bench.e2e import say
from streamrec.bench.latency import CLIENT_LINGER_MS, is_ready, start_consumer, wait_ready
from streamrec.bench.report import ROOT, append_section, broker, free_port, machine
from streamrec.bench.soak_report import NAN, Sample, Thresholds
from streamrec.eventlog.replay import replay
from streamrec.kafka_io.clients import ensure_topics, make_producer, resolve_client

logger = logging.getLogger(__name__)

TICK_S = 0.25  # how often the driver looks at the worker between samples
STOP_TIMEOUT_S = 60.0  # a worker that has not exited this long after SIGTERM is killed
FULL_START = ("The first life starts from every user's history as the cycle leaves it "
              "(the group's changelog filled first, as for the rate's probes), as the second "
              "restores it: both lives are the steady state.")
EMPTY_START = ("The first life starts from empty state (`--empty-start`): its histories fill "
               "over its first minutes, and its memory with them.")
SHORT_MINUTES = 10.0  # below this a run checks the harness more than it finds a leak


@dataclass(frozen=True)
class SoakOptions:
    """What `bench soak` runs; the defaults are the issue's 30-minute soak."""

    minutes: float = 30.0
    rate: float | None = None  # offered events/s; None: `load` of the maximum live load
    load: float = 0.5  # the fraction of the maximum live load offered (`soak_rate.py`)
    measure_events: int = 60_000  # events of the throughput run (the search's first guess)
    probe_s: float = 20.0  # each probe of the maximum live load (full histories from the start)
    full_start: bool = True  # the first life restores every history full, as the second does
    restart_at: float = 0.5  # share of the run at which the worker is restarted (0: never)
    sample_s: float = 5.0
    events: int = 100_000  # distinct events the producer cycles through
    users: int = 30_000  # synthetic stream only (when ../shared/data is absent)
    partitions: int = 4  # as bench e2e
    model: Path | None = None  # None: the games preset, trained once (as bench e2e)
    index: str = "auto"
    threads: int = 1
    worker_args: tuple[str, ...] = ()
    kafka_client: str | None = None  # the worker's and the probes' (None: env, else auto)
    bootstrap: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    workdir: Path = ROOT / ".cache" / "bench"


@dataclass
class Timeline:
    """When the restart happened, in seconds into the soak (None: not yet, or never)."""

    sigterm_s: float | None = None
    exited_s: float | None = None
    ready_s: float | None = None


class Supervisor:
    """The worker process of the soak: started, restarted on cue, watched for deaths."""

    def __init__(self, command: list[str], client: str) -> None:
        self.command, self.client = command, client
        self.life = 0
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.timeline = Timeline()

    def start(self) -> None:
        """A new worker process (same group, same instance id) on a fresh metrics port."""
        self.port = free_port()
        command = list(self.command)
        command[command.index("--metrics-port") + 1] = str(self.port)
        self.proc = subprocess.Popen(command, env=client_env(self.client))
        self.life += 1

    def tick(self, now: float, restart_s: float | None) -> None:
        """Advance the restart (SIGTERM, wait for the exit, start again, ready) at `now`."""
        tl, proc = self.timeline, self.proc
        if proc is None:
            return
        if restart_s is not None and tl.sigterm_s is None and now >= restart_s:
            say(f"restart: SIGTERM to the worker {now:.0f} s in")
            proc.send_signal(signal.SIGTERM)
            tl.sigterm_s = now
        elif tl.sigterm_s is not None and tl.exited_s is None:
            if proc.poll() is not None:
                tl.exited_s = now
                say(f"restart: exited with {proc.returncode} after {now - tl.sigterm_s:.1f} s; "
                    "starting it again in the same group")
                self.start()
            elif now - tl.sigterm_s > STOP_TIMEOUT_S:
                proc.kill()
        elif tl.exited_s is not None and tl.ready_s is None and is_ready(self.port):
            tl.ready_s = now
            say(f"restart: ready again {now - tl.exited_s:.1f} s after the start")
        elif proc.poll() is not None and (tl.sigterm_s is None or tl.exited_s is not None):
            raise RuntimeError(f"the worker exited with {proc.returncode} {now:.0f} s into "
                               "the soak")

    def stop(self) -> None:
        """SIGTERM, then kill after STOP_TIMEOUT_S."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Sampler:
    """One `Sample` per window from /proc and /metrics; CPU as a rate since the last."""

    def __init__(self) -> None:
        self.last: tuple[int, float, float] | None = None  # pid, CPU seconds, time
        self.sent = 0

    def take(self, worker: Supervisor, now: float, sent_total: int) -> Sample:
        """The sample of the window ending `now` (seconds into the soak)."""
        proc = worker.proc
        rss = cpu = lag = pending = users = NAN
        if proc is not None and proc.poll() is None:
            try:
                rss, cpu_s = proc_rss_mb(proc.pid), proc_cpu_s(proc.pid)
            except OSError:  # exited between the poll and the read
                rss, cpu_s = NAN, NAN
            if self.last is not None and self.last[0] == proc.pid:
                cpu = (cpu_s - self.last[1]) / max(now - self.last[2], 1e-9)
            self.last = (proc.pid, cpu_s, now)
            try:
                metrics = scrape(worker.port)
                lag = metrics.get("streamrec_consumer_lag_records", NAN)
                pending = metrics.get("streamrec_pending_users", NAN)
                users = metrics.get("streamrec_users_in_memory", NAN)
            except (OSError, ValueError, http.client.HTTPException):  # starting or stopping
                pass
        sample = Sample(round(now, 2), worker.life, rss, cpu, lag, pending, users,
                        sent_total - self.sent)
        self.sent = sent_total
        return sample


@dataclass
class SoakRun:
    """What the soak measured, before the windows get their latencies."""

    rate: float
    rate_source: str
    samples: list[Sample]
    timeline: Timeline
    sent: int
    start_ms: float
    arrival_ms: np.ndarray
    latency_ms: np.ndarray
    seconds: float = 0.0  # from the first event sent to the last sample
    producer_cpu: float = NAN  # cores: this process (the paced producer, the sampling)
    consumer_cpu: float = NAN  # cores: the latency consumer process


def run(opts: SoakOptions) -> soak_report.Verdict:
    """Measure the rate (unless given), soak, write CSV, plot and section; the verdict."""
    opts.workdir.mkdir(parents=True, exist_ok=True)
    model = bench_model(opts.model, opts.workdir, opts.users)
    stream = load_stream(max(opts.events, opts.measure_events), opts.users)
    client = resolve_client(opts.kafka_client)
    extra = [*opts.worker_args, "--index", opts.index, "--torch-threads", str(opts.threads)]
    with broker(opts.bootstrap) as bootstrap:
        if opts.rate:
            rate, source = opts.rate, "given (`--rate`)"
        else:
            found = soak_rate.find(bootstrap, model, stream, extra, client, events=opts.events,
                                   measure_events=opts.measure_events,
                                   partitions=opts.partitions, load=opts.load,
                                   probe_s=opts.probe_s, workdir=opts.workdir)
            rate, source = found.rate, found.sentence(opts.events, opts.measure_events)
        soaked = soak(bootstrap, model, stream, rate, opts, extra, client)
    soaked.rate_source = source
    samples = soak_report.with_latencies(soaked.samples, soaked.start_ms, soaked.arrival_ms,
                                         soaked.latency_ms)
    verdict = soak_report.judge(samples, rate, opts.thresholds)
    write_outputs(samples, verdict, soaked, opts, client, model, stream)
    for line in verdict.lines():
        print(f"[bench] {line}", flush=True)
    return verdict


def soak(bootstrap: str, model: Path, stream: Stream, rate: float, opts: SoakOptions,
         extra: list[str], client: str) -> SoakRun:
    """The worker under `rate` events/s for `minutes`, restarted at `restart_at`."""
    tag = uuid.uuid4().hex[:6]
    topic, out, group = f"bench-soak-{tag}", f"bench-soak-{tag}-recs", f"bench-soak-{tag}"
    ensure_topics(bootstrap, {topic: opts.partitions, out: opts.partitions})
    if opts.full_start:  # the first life starts where the second does: every history full
        histories, max_len = soak_rate.full_histories(model, stream.head(opts.events))
        say(f"filling the group's changelog: {len(histories):,} users, {max_len} items each")
        soak_rate.fill_changelog(bootstrap, group, histories, opts.partitions, client)
    duration = opts.minutes * 60.0
    restart_s = duration * opts.restart_at if opts.restart_at > 0 else None
    worker = Supervisor(worker_command(bootstrap, topic, out, group, model, 0, "soak", extra),
                        client)
    result_file = opts.workdir / f"soak-{tag}.npy"
    stop, producing, consumer = threading.Event(), None, None
    try:
        worker.start()
        wait_ready(worker.port, worker.proc)  # type: ignore[arg-type]
        consumer = start_consumer(bootstrap, out, duration, result_file, client)
        when = f"restart at {restart_s:.0f} s" if restart_s is not None else "no restart"
        say(f"soak: {rate:,.0f} events/s for {opts.minutes:g} min on {client}, {when}")
        producing = Producing(bootstrap, topic, stream, rate, stop, opts.events)
        start_ms, t0 = time.time() * 1000.0, time.monotonic()
        cpu0 = proc_cpu_s(os.getpid()), proc_cpu_s(consumer.pid)
        samples = _drive(worker, duration, restart_s, opts.sample_s, producing, t0)
        stop.set()
        seconds = time.monotonic() - t0
        cpu = [(proc_cpu_s(pid) - c) / seconds for pid, c in zip((os.getpid(), consumer.pid),
                                                                 cpu0, strict=True)]
        sent = producing.join()
        consumer.wait(timeout=180)
        ms, sent_ms = np.load(result_file)
    finally:
        stop.set()
        worker.stop()
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
    return SoakRun(rate, "", samples, worker.timeline, sent, start_ms,
                   (sent_ms + ms).astype(float), ms.astype(float), seconds, *cpu)


def _drive(worker: Supervisor, duration: float, restart_s: float | None, sample_s: float,
           producing: Producing, t0: float) -> list[Sample]:
    """Sample every `sample_s` until `duration`, restarting the worker on cue."""
    sampler = Sampler()
    samples: list[Sample] = []
    next_sample = sample_s
    while True:
        now = time.monotonic() - t0
        worker.tick(now, restart_s)
        producing.check()
        if now >= next_sample:
            samples.append(sampler.take(worker, now, producing.sent))
            s = samples[-1]
            if len(samples) % max(1, round(60 / sample_s)) == 0:
                say(f"{now:,.0f} s: RSS {s.rss_mb:,.0f} MB, lag {s.lag:,.0f}, CPU {s.cpu:.2f}, "
                    f"{producing.sent:,} events sent")
            next_sample += sample_s
            if next_sample > duration + 1e-6:
                return samples
        time.sleep(TICK_S)


class Producing:
    """The paced event producer on a thread of this process, cycling through the stream."""

    def __init__(self, bootstrap: str, topic: str, stream: Stream, rate: float,
                 stop: threading.Event, events: int) -> None:
        self.sent = 0
        self.error: BaseException | None = None
        self.producer = make_producer(bootstrap, "bench-soak-producer",
                                      linger_ms=CLIENT_LINGER_MS)
        pairs = list(zip(stream.users[:events], stream.items[:events], strict=True))
        self.thread = threading.Thread(
            target=self._run, args=(topic, itertools.cycle(pairs), rate, stop), daemon=True)
        self.thread.start()

    def _run(self, topic: str, pairs: itertools.cycle, rate: float,
             stop: threading.Event) -> None:
        try:
            replay(self.producer, topic, pairs, rate, stop=stop, on_send=self._count)
        except Exception as exc:  # re-raised on the driver's thread by check()
            self.error = exc

    def _count(self, _user: str, _item: str) -> None:
        self.sent += 1

    def check(self) -> None:
        """Raise what stopped the producer thread, if anything did."""
        if self.error is not None:
            raise RuntimeError(f"the event producer failed: {self.error}") from self.error

    def join(self) -> int:
        """Wait for the thread (its last acknowledgements) and close; events sent."""
        self.thread.join(timeout=180)
        self.check()
        self.producer.close(60.0)
        return self.sent


def write_outputs(samples: list[Sample], verdict: soak_report.Verdict, soaked: SoakRun,
                  opts: SoakOptions, client: str, model: Path, stream: Stream) -> None:
    """docs/bench/soak-<client>-<run stamp>.csv and .png, and the dated section of
    BENCHMARKS.md."""
    csv_path = report.run_file(f"soak-{client}", ".csv")
    png_path = report.run_file(f"soak-{client}")
    tl = soaked.timeline
    soak_report.write_csv(csv_path, samples)
    soak_report.plot(png_path, samples, tl.sigterm_s,
                     f"bench soak, {client}, {soaked.rate:,.0f} events/s")
    received = sum(s.recs for s in samples)
    restart = "no restart."
    if tl.sigterm_s is not None:
        recovered = soak_report.recovered_s(samples, tl.sigterm_s, verdict)
        restart = (f"SIGTERM {tl.sigterm_s:.0f} s in; exited after "
                   f"{_since(tl.exited_s, tl.sigterm_s)} s; the new process ready "
                   f"{_since(tl.ready_s, tl.exited_s)} s after its start; windows back under "
                   f"the p99 limit {_since(recovered, tl.sigterm_s)} s after the SIGTERM.")
    short = (f" Shorter than {SHORT_MINUTES:g} minutes: this run checks the harness; its "
             "verdict says little about leaks." if opts.minutes < SHORT_MINUTES else "")
    body = "\n\n".join([
        f"Machine: {machine()}.",
        _settings(soaked, opts, client, model, stream) + f" Restart: {restart} Sent "
        f"{soaked.sent:,} events, {received:,} recommendations arrived in the windows.{short}",
        soak_report.summary(samples, verdict),
        "Verdict: " + "; ".join(verdict.lines()) + ".",
        f"![soak {client}]({report.link(png_path)}) Time series: "
        f"[{report.link(csv_path)}]({report.link(csv_path)})",
    ])
    append_section(f"bench soak ({client})", body)


def _settings(soaked: SoakRun, opts: SoakOptions, client: str, model: Path,
              stream: Stream) -> str:
    """The paragraph that says what ran: command, worker, rate and how, probes, sampling."""
    rate_flag = (f" --rate {opts.rate:g}" if opts.rate else "") + (
        "" if opts.full_start else " --empty-start")
    return (
        f"`streamrec bench soak --minutes {opts.minutes:g} --kafka-client {client}{rate_flag}`: "
        f"one worker (`--index {opts.index} --torch-threads {opts.threads}`"
        f"{''.join(' ' + a for a in opts.worker_args)}; model {model.name}) against a local "
        f"single-node broker on the same machine, {opts.partitions} partitions, for "
        f"{opts.minutes:g} minutes at {soaked.rate:,.0f} events/s: {soaked.rate_source}. "
        f"{FULL_START if opts.full_start else EMPTY_START} "
        f"Events cycle through the first {min(opts.events, len(stream)):,} of {stream.source}, "
        f"`ts` = the time of sending; the worker, the producer and the latency consumer all on "
        f"{client}. Achieved {soaked.sent / soaked.seconds:,.0f} events/s; CPU of the "
        f"producer process {soaked.producer_cpu:.2f} cores, of the latency consumer "
        f"{soaked.consumer_cpu:.2f} (they share the box with the worker and the broker). "
        f"Sampled every {opts.sample_s:g} s: RSS and CPU (utime + stime) of the worker from "
        "/proc, its lag (records), pending users and users from /metrics, and each window's "
        "p99 from event timestamp to arrival at the outside consumer.")


def _since(later: float | None, earlier: float | None) -> str:
    return "-" if later is None or earlier is None else f"{later - earlier:.1f}"
