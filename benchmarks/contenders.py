"""The contenders of `bench e2e`, each measured the same way over the same stream.

    a  passthrough (`runners.py`): consume -> decode -> produce one record per event
    b  the worker, full pipeline, default settings (changelog, commits, explanations)
    b' the worker on a stream of distinct users (`distinct_rounds`: nothing to coalesce)
    c  naive (`runners.py`): the same model, index and store called once per event
    d  the model stage alone: encoder + search on the same histories, no Kafka (d': of b')
    e  several worker processes in one consumer group on the same machine

Time runs from the first event consumed to the last record acknowledged: workers
are watched through their own /metrics (events consumed, pending users, records in
flight), never from process start. CPU seconds and peak RSS come from /proc. Every
process runs on the Kafka adapter `client` names (`client_env`; None: the
environment's `STREAMREC_KAFKA_CLIENT`, else auto).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streamrec.bench.report import free_port
from streamrec.kafka_io.clients import CLIENT_ENV, ensure_topics, make_producer
from streamrec.kafka_io.topic_reader import partitions_of, read_to_end

logger = logging.getLogger(__name__)

# What `run_workers` scrapes while it waits for the end (sample names)
PROGRESS = ("streamrec_events_consumed_total", "streamrec_pending_users",
            "streamrec_inflight_records")
DONE_POLL_S = 0.1  # metrics scrapes cost CPU the worker needs: a tenth of a second
GAMES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "games.txt"


@dataclass(frozen=True)
class Stream:
    """Events in the order they are produced: user, item, event time (ms)."""

    users: list[str]
    items: list[str]
    ts: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.users)

    def head(self, n: int) -> Stream:
        """The first `n` events (all of them when there are fewer)."""
        return Stream(self.users[:n], self.items[:n], self.ts[:n], self.source)

    def last_ts(self) -> dict[str, int]:
        """Each user's last event time (times are unique and increasing)."""
        return dict(zip(self.users, self.ts.tolist(), strict=True))


@dataclass
class Result:
    """One contender's run over the stream."""

    name: str
    events: int
    seconds: float
    recommendations: int
    records_out: int
    cpu_s: float
    peak_rss_mb: float
    note: str = ""
    final: dict[str, float] = dataclasses.field(default_factory=dict)  # last /metrics scrape
    start_rss_mb: float = 0.0  # resident memory when the first event was consumed

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def recs_per_s(self) -> float:
        return self.recommendations / self.seconds if self.seconds else 0.0


def load_stream(events: int, users: int, seed: int = 0, data: Path | None = None) -> Stream:
    """Up to `events` events, users interleaved (games log when present)."""
    from streamrec.encoder.data import load_interactions
    from streamrec.eventlog.replay import interleave

    path = data or (GAMES if GAMES.is_file() else None)
    if path is not None:
        interactions = load_interactions(path, "sasrec")
        source = f"{path.name} ({interactions.num_users:,} users)"
    else:
        from streamrec.encoder.data import Interactions
        from streamrec.encoder.synthetic import generate

        pairs = generate(users, seed=seed)
        interactions = Interactions.from_pairs([u for u, _ in pairs], [i for _, i in pairs],
                                               source="synthetic")
        source = f"synthetic ({users:,} users)"
    pairs = list(interleave(interactions, seed=seed))[:events]
    base = 1_700_000_000_000
    return Stream([u for u, _ in pairs], [i for _, i in pairs],
                  base + np.arange(len(pairs), dtype=np.int64), source)


def distinct_rounds(stream: Stream, positions: int = 5) -> Stream:
    """The first `positions` events of every user who has that many (fewer rounds when
    nobody has), in rounds that keep one user order: a user's next event comes after
    every other user's event of the round, so on one partition a worker never holds two
    events of one user at once (its pending limit is below the users of a round) and
    each event costs one recommendation. The stream on which the worker is compared
    with the model stage alone."""
    by_user: dict[str, list[int]] = {}
    for i, user in enumerate(stream.users):
        by_user.setdefault(user, []).append(i)
    # fewer rounds when no user has `positions` events (a short prefix of the log)
    positions = min(positions, max((len(idx) for idx in by_user.values()), default=0))
    users = [u for u, idx in by_user.items() if len(idx) >= positions]
    order = [by_user[u][p] for p in range(positions) for u in users]
    base = int(stream.ts[0]) if len(stream) else 1_700_000_000_000
    return Stream([stream.users[i] for i in order], [stream.items[i] for i in order],
                  base + np.arange(len(order), dtype=np.int64),
                  f"{stream.source}: the first {positions} events of {len(users):,} users, "
                  "in rounds")


def bench_model(model: Path | None, workdir: Path, users: int = 30_000,
                games: bool | None = None) -> Path:
    """The model to serve: `model`, or the games preset trained once and cached
    (the demo preset on a synthetic log when ../shared/data is absent, or when
    `games` is False: a small fast model for benchmarks that measure something else)."""
    if model is not None:
        return model
    workdir.mkdir(parents=True, exist_ok=True)
    games = GAMES.is_file() if games is None else games and GAMES.is_file()
    path = workdir / ("games-model" if games else "demo-model")
    if (path / "config.json").is_file():
        return path
    if games:
        data, preset = GAMES, "games"
    else:
        from streamrec.encoder.synthetic import generate, write_sasrec

        data, preset = write_sasrec(workdir / "synthetic.txt", generate(users, seed=0)), "demo"
    print(f"[bench] training the {preset} preset on {data} into {path} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "streamrec.cli.main", "train", "--data", str(data),
                    "--format", "sasrec", "--preset", preset, "--out", str(path),
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return path


def client_env(client: str | None) -> dict[str, str]:
    """The environment of a child process that uses the Kafka adapter `client` (None:
    this process's own choice, inherited as it is)."""
    env = dict(os.environ)
    if client is not None:
        env[CLIENT_ENV] = client
    return env


def preload(bootstrap: str, topic: str, stream: Stream, partitions: int) -> float:
    """Create `topic` and write the stream to it; returns seconds."""
    ensure_topics(bootstrap, {topic: partitions})
    producer = make_producer(bootstrap, "bench-preload", linger_ms=20, batch_bytes=512 * 1024)
    start = time.perf_counter()
    for n, (user, item, ts) in enumerate(
            zip(stream.users, stream.items, stream.ts.tolist(), strict=True)):
        value = json.dumps({"user_id": user, "item_id": item, "ts": ts}).encode()
        producer.send(topic, value, key=user.encode())
        if n % 1000 == 0:
            producer.poll(0)  # delivery reports: librdkafka serves them only here
    producer.close(120.0)
    return time.perf_counter() - start


# -- processes and their measurements ------------------------------------------------

def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak resident memory (VmHWM) of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a running process now."""
    return proc_peak_rss_mb(pid, "VmRSS")


def scrape_samples(port: int, names: Sequence[str] = ()) -> list[Sample]:
    """Every sample of a worker's /metrics, labels kept; only those `names` (sample
    names) when given, which the worker collects alone (`name[]`): a full scrape takes
    about 12 ms of the worker's interpreter, a tenth of its time at 10 scrapes a second."""
    query = urllib.parse.urlencode([("name[]", n) for n in names])
    url = f"http://127.0.0.1:{port}/metrics" + (f"?{query}" if query else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return [sample for family in text_string_to_metric_families(text)
            for sample in family.samples]


def scrape(port: int, names: Sequence[str] = ()) -> dict[str, float]:
    """Sample values of a worker's /metrics (only `names`, when given), summed over labels."""
    values: dict[str, float] = {}
    for sample in scrape_samples(port, names):
        values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def worker_command(bootstrap: str, topic: str, out: str, group: str, model: Path, port: int,
                   instance: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "streamrec.cli.main", "--log-level", "WARNING", "worker",
            "--bootstrap", bootstrap, "--model", str(model), "--events-topic", topic,
            "--recommendations-topic", out, "--dead-letter-topic", f"{out}.dlq",
            "--group-id", group, "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
            "--instance-id", instance, *extra]


def run_workers(name: str, bootstrap: str, topic: str, model: Path, events: int,
                processes: int = 1, extra: list[str] | None = None,
                timeout_s: float = 1800.0, client: str | None = None) -> tuple[Result, str]:
    """Run `processes` workers in one group over the topic; returns (result, output topic)."""
    from streamrec.kafka_io.local.probes import port_accepts

    if events < 1:
        raise ValueError(f"{name}: no events to time")

    tag = uuid.uuid4().hex[:6]
    out, group = f"{topic}-{name}-{tag}", f"bench-{name}-{tag}"
    ports = [free_port() for _ in range(processes)]
    procs = [subprocess.Popen(worker_command(bootstrap, topic, out, group, model, port,
                                             f"{name}-{i}", extra or []),
                              env=client_env(client))
             for i, port in enumerate(ports)]
    try:
        deadline = time.monotonic() + 300
        while not all(port_accepts("127.0.0.1", p) for p in ports):
            _check_alive(procs)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: workers did not open their metrics ports")
            time.sleep(0.1)
        def snapshot() -> tuple[float, float, float]:  # time, CPU s, RSS MB of the workers
            return (time.perf_counter(), sum(proc_cpu_s(p.pid) for p in procs),
                    sum(proc_rss_mb(p.pid) for p in procs))

        idle = snapshot()  # the last scrape that saw no event consumed
        start: tuple[float, float, float] | None = None
        deadline = time.monotonic() + timeout_s
        while True:
            _check_alive(procs)
            samples = [scrape(p, PROGRESS) for p in ports]
            consumed = sum(s.get("streamrec_events_consumed_total", 0) for s in samples)
            busy = sum(s.get("streamrec_pending_users", 0) + s.get("streamrec_inflight_records", 0)
                       for s in samples)
            done = consumed >= events and busy == 0
            if start is None:
                if consumed > 0:  # a stream done within one scrape is timed from the last idle
                    start = idle if done else snapshot()
                else:
                    idle = snapshot()
            if done and start is not None:
                end = snapshot()
                seconds, cpu = end[0] - start[0], end[1] - start[1]
                rss0 = start[2]
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: consumed {consumed:.0f} of {events} in {timeout_s}s")
            time.sleep(DONE_POLL_S)
        samples = [scrape(p) for p in ports]  # every metric, once
        recs = sum(s.get("streamrec_recommendations_published_total", 0) for s in samples)
        out_records = recs + sum(s.get("streamrec_changelog_records_published_total", 0)
                                 + s.get("streamrec_dead_letters_published_total", 0)
                                 for s in samples)
        rss = sum(proc_peak_rss_mb(p.pid) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    final = {k: sum(s.get(k, 0.0) for s in samples) for k in samples[0]}
    return Result(name, events, seconds, int(recs), int(out_records), cpu, rss,
                  final=final, start_rss_mb=rss0), out


def run_runner(runner: str, bootstrap: str, topic: str, events: int,
               model: Path | None = None, threads: int = 0, backend: str = "auto",
               client: str | None = None) -> Result:
    """Run passthrough or naive in a subprocess and read its JSON result."""
    tag = uuid.uuid4().hex[:6]
    cmd = [sys.executable, "-m", "streamrec.bench.runners", runner, "--bootstrap", bootstrap,
           "--topic", topic, "--out", f"{topic}-{runner}-{tag}", "--group",
           f"bench-{runner}-{tag}", "--events", str(events), "--threads", str(threads),
           "--index", backend]
    if model is not None:
        cmd += ["--model", str(model)]
    partitions = len(partitions_of(bootstrap, topic))
    ensure_topics(bootstrap, {f"{topic}-{runner}-{tag}": partitions})
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          env=client_env(client))
    if done.returncode:
        raise RuntimeError(f"{runner} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return Result(runner, doc["events"], doc["seconds"], doc["recommendations"],
                  doc["records_out"], doc["cpu_s"], doc["peak_rss_mb"])


def model_stage(stream: Stream, model: Path, max_batch: int, threads: int,
                backend: str = "auto") -> Result:
    """Encoder + search alone over the histories the worker would batch, no Kafka.

    The stream is applied to one history store in order; whenever `max_batch`
    distinct users changed, their current histories are encoded and searched,
    which is what the worker does under full load. Only encode + search are timed.
    """
    from streamrec.worker.recommend import Recommender
    from streamrec.worker.state.partition import PartitionStore

    recommender = Recommender.load(model, "cpu", backend, threads)
    store = PartitionStore(recommender.max_len)
    rows = recommender.checkpoint.vocab.rows(stream.items)
    timed = 0.0
    served = 0
    for users, idx in _batches(stream.users, max_batch):
        store.append(users, rows[idx], stream.ts[idx], idx.astype(np.int64))
        distinct = list(dict.fromkeys(users))
        histories, lengths = store.rows(distinct)
        t0 = time.perf_counter()
        recommender.search(recommender.encode(histories, lengths), histories, 10)
        timed += time.perf_counter() - t0
        served += len(distinct)
    return Result(f"model stage ({threads} thr, {recommender.index.name})", len(stream), timed,
                  served, 0, float("nan"), float("nan"))


def _batches(users: list[str], max_batch: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """Consecutive runs of events holding `max_batch` distinct users each."""
    start = 0
    seen: set[str] = set()
    for i, user in enumerate(users):
        if user not in seen and len(seen) == max_batch:
            yield users[start:i], np.arange(start, i)
            start, seen = i, set()
        seen.add(user)
    if start < len(users):
        yield users[start:], np.arange(start, len(users))


def verify(bootstrap: str, out: str, stream: Stream) -> int:
    """Users whose last event got no recommendation on `out` (0 = all served)."""
    wanted = stream.last_ts()
    for rec in read_to_end(bootstrap, out, client_id="bench-verify"):
        doc = json.loads(rec.value)
        if wanted.get(doc["user_id"]) == doc["event_ts"]:
            del wanted[doc["user_id"]]
    return len(wanted)


def _check_alive(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is not None:
            raise RuntimeError(f"worker process {p.pid} exited with {p.returncode}")


def as_dict(result: Result) -> dict[str, Any]:
    """A result with its rates, for JSON output."""
    return dataclasses.asdict(result) | {"events_per_s": result.events_per_s,
                                         "recs_per_s": result.recs_per_s}
