"""`streamrec bench state`: what a user costs in memory, and how fast state comes back.

1. Memory: `--users` users with full `--history` (L) histories in the worker's
   in-memory stores (`PartitionStore`, split over `--partitions`), measured as the
   growth of this process's resident memory, and as the bytes of the arrays alone.
2. Restore: the same users written to a fresh compacted changelog on a real
   broker, then restored the way a worker does on assignment
   (`DurableHistories.restore`: read, decode, load into the stores), timed.
3. The user cap (`--cap-users`): that many distinct users streamed through a real
   worker process with `--max-users`, a tenth of them returning at the end (read
   back from the changelog); the worker's peak RSS, users evicted, and the memory
   of its eviction index, from its own /metrics. A small fast model (the demo
   preset on a synthetic log): the figure is memory, not model time.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.bench.report import append_section, broker, machine, table
from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.clients import ensure_topics, make_producer
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.state.changelog import HistoryRecord, changelog_topic, encode_history
from streamrec.worker.state.durable import DurableHistories

logger = logging.getLogger(__name__)

CATALOGUE = 50_000
BASE_TS = 1_700_000_000_000


@dataclass(frozen=True)
class StateOptions:
    """What `bench state` measures."""

    users: int = 1_000_000
    history: int = 50
    partitions: int = 4
    bootstrap: str | None = None
    cap_users: int = 0  # distinct users through a capped worker (0: skip part 3)
    max_users: int = 10_000  # the worker's --max-users (per partition)
    returning: float = 0.1  # share of users with a second event after the rest
    workdir: Path = Path(".cache/bench")
    model: Path | None = None  # the capped worker's model (default: demo preset, trained once)
    worker_args: tuple[str, ...] = ()  # extra flags of the capped worker


def rss_bytes() -> int:
    """Resident memory of this process now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
    return 0


def user_id(u: int) -> str:
    return f"user-{u:08d}"


def memory(opts: StateOptions, vocab: ItemVocab) -> tuple[float, float]:
    """(RSS bytes per user, array bytes per user) of full histories in the stores."""
    gc.collect()
    before = rss_bytes()
    state = DurableHistories(opts.history, vocab, bootstrap="unused:9092", group_id="bench",
                             security=KafkaSecurity())
    chunk = 50_000
    for first in range(0, opts.users, chunk):
        users = np.arange(first, min(first + chunk, opts.users))
        ids = [user_id(u) for u in users]
        items = 1 + (users[:, None] + np.arange(opts.history)[None, :]) % CATALOGUE
        ts = BASE_TS + np.arange(opts.history)[None, :].repeat(len(users), axis=0)
        by_partition = users % opts.partitions
        for p in range(opts.partitions):
            mask = by_partition == p
            state.store(p).load([i for i, m in zip(ids, mask, strict=True) if m], items[mask],
                                ts[mask], users[mask])
        if first % 200_000 == 0:
            print(f"[bench] memory: {first + len(users):,} users loaded", flush=True)
    gc.collect()
    grown = rss_bytes() - before
    arrays = sum(store.nbytes() for _, store in state.stores())
    users = state.num_users()
    del state
    gc.collect()
    return grown / users, arrays / users


def fill(bootstrap: str, group: str, opts: StateOptions) -> float:
    """One changelog record per user (L items each); returns seconds."""
    topic = changelog_topic(group)
    ensure_topics(bootstrap, {topic: opts.partitions},
                  configs={topic: {"cleanup.policy": "compact"}})
    producer = make_producer(bootstrap, "bench-state", linger_ms=20, batch_bytes=512 * 1024)
    start = time.perf_counter()
    times = tuple(BASE_TS + i for i in range(opts.history))
    for u in range(opts.users):
        record = HistoryRecord(
            items=tuple(str(1 + (u + i) % CATALOGUE) for i in range(opts.history)),
            ts=times, offset=u)
        producer.send(topic, encode_history(record), key=user_id(u).encode(),
                      partition=u % opts.partitions)
        if u % 1000 == 0:
            producer.poll(0)  # delivery reports: librdkafka serves them only here
        if u % 200_000 == 0:
            print(f"[bench] changelog: {u:,} of {opts.users:,} records written", flush=True)
    producer.close(300.0)
    return time.perf_counter() - start


def capped(bootstrap: str, opts: StateOptions) -> tuple[list[object], bool]:
    """Stream `cap_users` distinct users through a worker with `--max-users`; returns a
    table row and whether every user's last event got a recommendation."""
    from streamrec.bench.contenders import Stream, bench_model, preload, run_workers, verify
    from streamrec.encoder.checkpoint import load_checkpoint

    model = bench_model(opts.model, opts.workdir, games=False)
    vocab = load_checkpoint(model).vocab
    items = vocab.external(np.arange(1, len(vocab) + 1))
    rng = np.random.default_rng(0)
    back = rng.choice(opts.cap_users, int(opts.cap_users * opts.returning), replace=False)
    order = np.concatenate([np.arange(opts.cap_users), back])
    picks = np.minimum(rng.zipf(1.2, len(order)), len(items)) - 1
    stream = Stream([user_id(u) for u in order.tolist()], [items[i] for i in picks.tolist()],
                    BASE_TS + np.arange(len(order), dtype=np.int64), "distinct users")
    topic = f"bench-cap-{uuid.uuid4().hex[:6]}"
    print(f"[bench] cap: preloading {len(stream):,} events of {opts.cap_users:,} users",
          flush=True)
    preload(bootstrap, topic, stream, opts.partitions)
    print(f"[bench] cap: worker with --max-users {opts.max_users:,} per partition", flush=True)
    result, out = run_workers("cap", bootstrap, topic, model, len(stream),
                              extra=["--max-users", str(opts.max_users), *opts.worker_args],
                              timeout_s=3600)
    missing = verify(bootstrap, out, stream)
    final = result.final
    evicted = final.get("streamrec_evicted_users", 0.0)
    index_bytes = final.get("streamrec_evicted_index_bytes", 0.0)
    row = [f"{opts.cap_users:,}", f"{len(back):,}", f"{opts.max_users:,} x {opts.partitions}",
           f"{final.get('streamrec_users_in_memory', 0):,.0f}", f"{evicted:,.0f}",
           f"{index_bytes / max(evicted, 1):.1f}", f"{result.start_rss_mb:,.0f}",
           f"{result.peak_rss_mb:,.0f}",
           f"{result.events_per_s:,.0f}", "yes" if not missing else f"no: {missing:,} missing"]
    return row, not missing


def run(opts: StateOptions) -> bool:
    """Memory and restore (`users` > 0), then the cap (`cap_users` > 0); appends the
    section; False if users were lost or went unserved."""
    ok = True
    parts = [f"Machine: {machine()}; local single-node broker on the same machine."]
    with broker(opts.bootstrap) as bootstrap:
        if opts.users:
            row, restored_all = memory_and_restore(bootstrap, opts)
            ok &= restored_all
            parts.append(table(
                ["users", "L", "bytes/user (RSS)", "bytes/user (arrays)", "GiB for all",
                 "changelog write s", "restore s", "restore records/s", "restore readers",
                 "all restored"],
                [row]))
        if opts.cap_users:
            row, served = capped(bootstrap, opts)
            ok &= served
            parts.append("User cap: distinct users through one worker process (demo model, "
                         "1 event each, the returning ones a second event at the end).")
            parts.append(table(
                ["users", "returning", "--max-users x partitions", "in memory at end",
                 "evicted at end", "index bytes/evicted user",
                 "worker RSS at first event MiB", "worker peak RSS MiB",
                 "events/s", "last events served"], [row]))
    append_section("bench state", "\n\n".join(parts))
    return ok


def memory_and_restore(bootstrap: str, opts: StateOptions) -> tuple[list[object], bool]:
    """Bytes per user in memory, then a restore of as many users; a table row and
    whether every user came back."""
    vocab = ItemVocab([str(i) for i in range(1, CATALOGUE + 1)])
    per_user_rss, per_user_arrays = memory(opts, vocab)
    print(f"[bench] {per_user_rss:,.0f} bytes/user resident ({per_user_arrays:,.0f} in arrays)",
          flush=True)
    group = f"bench-state-{uuid.uuid4().hex[:6]}"
    write_s = fill(bootstrap, group, opts)
    state = DurableHistories(opts.history, vocab, bootstrap=bootstrap, group_id=group,
                             security=KafkaSecurity())
    print("[bench] restoring", flush=True)
    restored = state.restore(list(range(opts.partitions)))
    ok = restored.users == opts.users
    row = [f"{opts.users:,}", opts.history, f"{per_user_rss:,.0f}", f"{per_user_arrays:,.0f}",
           f"{per_user_rss * opts.users / 2**30:.2f}", f"{write_s:.1f}",
           f"{restored.seconds:.1f}", f"{restored.records / restored.seconds:,.0f}",
           restored.readers, "yes" if ok else f"no: {restored.users:,}"]
    return row, ok
