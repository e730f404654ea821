"""`streamrec bench state`: what a user costs in memory, and how fast state comes back.

1. Memory: `--users` users with full `--history` (L) histories in the worker's
   in-memory stores (`PartitionStore`, split over `--partitions`), measured as the
   growth of this process's resident memory, and as the bytes of the arrays alone.
2. Restore: the same users written to a fresh compacted changelog on a real
   broker, then restored the way a worker does on assignment
   (`DurableHistories.restore`: read, decode, load into the stores), timed.
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
    producer = make_producer(bootstrap, "bench-state", linger_ms=20, batch_size=512 * 1024)
    start = time.perf_counter()
    times = tuple(BASE_TS + i for i in range(opts.history))
    for u in range(opts.users):
        record = HistoryRecord(
            items=tuple(str(1 + (u + i) % CATALOGUE) for i in range(opts.history)),
            ts=times, offset=u)
        producer.send(topic, key=user_id(u).encode(), value=encode_history(record),
                      partition=u % opts.partitions)
        if u % 200_000 == 0:
            print(f"[bench] changelog: {u:,} of {opts.users:,} records written", flush=True)
    producer.flush()
    producer.close()
    return time.perf_counter() - start


def run(opts: StateOptions) -> bool:
    """Memory, then the restore; appends the section; False if users were lost."""
    vocab = ItemVocab([str(i) for i in range(1, CATALOGUE + 1)])
    per_user_rss, per_user_arrays = memory(opts, vocab)
    print(f"[bench] {per_user_rss:,.0f} bytes/user resident ({per_user_arrays:,.0f} in arrays)",
          flush=True)
    with broker(opts.bootstrap) as bootstrap:
        group = f"bench-state-{uuid.uuid4().hex[:6]}"
        write_s = fill(bootstrap, group, opts)
        state = DurableHistories(opts.history, vocab, bootstrap=bootstrap, group_id=group,
                                 security=KafkaSecurity())
        print("[bench] restoring", flush=True)
        restored = state.restore(list(range(opts.partitions)))
    ok = restored.users == opts.users
    rows = [[f"{opts.users:,}", opts.history, f"{per_user_rss:,.0f}", f"{per_user_arrays:,.0f}",
             f"{per_user_rss * opts.users / 2**30:.2f}", f"{write_s:.1f}",
             f"{restored.seconds:.1f}", f"{restored.records / restored.seconds:,.0f}",
             "yes" if ok else f"no: {restored.users:,}"]]
    body = "\n\n".join([
        f"Machine: {machine()}; local single-node broker on the same machine.",
        table(["users", "L", "bytes/user (RSS)", "bytes/user (arrays)", "GiB for all",
               "changelog write s", "restore s", "restore records/s", "all restored"], rows),
    ])
    append_section("bench state", body)
    return ok
