"""`streamrec bench model`: the model stage alone, and exact against approximate search.

1. Encoder + search (what `Recommender.encode` + `Recommender.search` do for the
   worker) in users/s by batch size, on histories drawn from the stream the e2e
   benchmark uses (so their lengths are realistic), at 1 thread and at every core,
   and on CUDA when torch sees a GPU.
2. On synthetic catalogues (clustered Gaussian item vectors, d = 64) of 100k and 1M
   items: FAISS flat (exact) against FAISS IVF at several `nprobe`, and the exact
   torch matmul + top-k the worker falls back to: recall@10 against exact and
   queries/s at batch 256.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.bench.contenders import bench_model, load_stream
from streamrec.bench.report import ROOT, append_section, machine, plot_path, table

logger = logging.getLogger(__name__)

DIM = 64


@dataclass(frozen=True)
class ModelOptions:
    """What `bench model` measures."""

    model: Path | None = None
    batches: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096)
    catalogues: tuple[int, ...] = (100_000, 1_000_000)
    seconds: float = 2.0  # per measurement
    queries: int = 2048
    workdir: Path = ROOT / ".cache" / "bench"


def rate(work: Callable[[], object], units: int, seconds: float) -> float:
    """Units per second of `work()`, repeated for about `seconds` after one warm-up."""
    work()
    done, start = 0, time.perf_counter()
    while True:
        work()
        done += units
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def set_threads(threads: int) -> None:
    """torch and FAISS (OpenMP) threads."""
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(threads)


def stage_rates(opts: ModelOptions) -> list[list[str]]:
    """Users/s of encode + search by batch size, per device and thread count."""
    import torch

    from streamrec.worker.recommend import Recommender

    model = bench_model(opts.model, opts.workdir)
    stream = load_stream(10**9, 30_000)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        recommender = Recommender.load(model, device)
        histories, lengths = sample_histories(stream, recommender, max(opts.batches))
        for threads in sorted({1, os.cpu_count() or 1}) if device == "cpu" else [0]:
            if threads:
                set_threads(threads)
            for batch in opts.batches:
                h, n = histories[:batch], lengths[:batch]
                r = recommender
                encode = rate(lambda h=h, n=n, r=r: r.encode(h, n), batch, opts.seconds)
                encoded = r.encode(h, n)
                search = rate(lambda h=h, e=encoded, r=r: r.search(e, h, 10), batch,
                              opts.seconds)
                both = rate(lambda h=h, n=n, r=r: r.search(r.encode(h, n), h, 10), batch,
                            opts.seconds)
                label = f"{device}, {threads} thr" if threads else device
                print(f"[bench] {label} batch {batch}: {both:,.0f} users/s", flush=True)
                rows.append([label, recommender.index.name, batch, f"{encode:,.0f}",
                             f"{search:,.0f}", f"{both:,.0f}"])
    set_threads(os.cpu_count() or 1)
    return rows


def sample_histories(stream: object, recommender: object, count: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Final histories of `count` random users of the stream, as the worker holds them."""
    from streamrec.worker.state.partition import PartitionStore

    store = PartitionStore(recommender.max_len)  # type: ignore[attr-defined]
    rows = recommender.checkpoint.vocab.rows(stream.items)  # type: ignore[attr-defined]
    store.append(stream.users, rows, stream.ts, np.arange(len(rows)))  # type: ignore[attr-defined]
    users = sorted(set(stream.users))  # type: ignore[attr-defined]
    picked = np.random.default_rng(0).choice(len(users), size=count, replace=count > len(users))
    return store.rows([users[i] for i in picked])


def catalogue(items: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clustered item vectors [items + 1, d] (row 0 padding) and matching queries."""
    centers = rng.standard_normal((max(items // 100, 16), DIM)).astype(np.float32)
    emb = np.empty((items + 1, DIM), dtype=np.float32)
    emb[0] = 0
    assign = rng.integers(0, len(centers), size=items)
    emb[1:] = centers[assign] + 0.5 * rng.standard_normal((items, DIM)).astype(np.float32)
    return emb, centers


def index_rows(opts: ModelOptions) -> list[list[str]]:
    """Recall@10 and queries/s: torch exact, FAISS flat, FAISS IVF by nprobe."""
    import torch

    rng = np.random.default_rng(0)
    out = []
    try:
        import faiss
    except ImportError:
        faiss = None
    for items in opts.catalogues:
        emb, centers = catalogue(items, rng)
        pick = rng.integers(0, len(centers), size=opts.queries)
        queries = (centers[pick] + 0.5 * rng.standard_normal((opts.queries, DIM))
                   ).astype(np.float32)
        table_t = torch.from_numpy(emb[1:])
        batch = queries[:256]

        def torch_search(q: np.ndarray = batch, table: torch.Tensor = table_t) -> np.ndarray:
            return torch.topk(torch.from_numpy(q) @ table.T, 10).indices.numpy()

        exact = np.concatenate([torch_search(queries[i: i + 256])
                                for i in range(0, len(queries), 256)])
        qps = rate(torch_search, len(batch), opts.seconds)
        out.append([f"{items:,}", "torch matmul + top-k (exact)", "-", "1.000", f"{qps:,.0f}",
                    "-"])
        print(f"[bench] {items:,} items torch exact: {qps:,.0f} q/s", flush=True)
        if faiss is None:
            continue
        flat = faiss.IndexFlatIP(DIM)
        flat.add(emb[1:])
        qps = rate(lambda f=flat, b=batch: f.search(b, 10), len(batch), opts.seconds)
        found = flat.search(queries, 10)[1]
        out.append([f"{items:,}", "FAISS IndexFlatIP", "-", f"{recall(found, exact):.3f}",
                    f"{qps:,.0f}", "-"])
        print(f"[bench] {items:,} items FAISS flat: {qps:,.0f} q/s", flush=True)
        nlist = int(4 * np.sqrt(items))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist,
                                 faiss.METRIC_INNER_PRODUCT)
        start = time.perf_counter()
        sample = emb[1:][rng.choice(items, size=min(items, 40 * nlist), replace=False)]
        ivf.train(sample)
        ivf.add(emb[1:])
        build = time.perf_counter() - start
        for nprobe in (4, 16, 64):
            ivf.nprobe = nprobe
            found = ivf.search(queries, 10)[1]
            qps = rate(lambda i=ivf, b=batch: i.search(b, 10), len(batch), opts.seconds)
            out.append([f"{items:,}", f"FAISS IVF{nlist},Flat", str(nprobe),
                        f"{recall(found, exact):.3f}", f"{qps:,.0f}", f"{build:.1f}"])
            print(f"[bench] {items:,} items IVF nprobe {nprobe}: {qps:,.0f} q/s", flush=True)
    return out


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact top-10 that `found` also returned."""
    hits = [len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits)) / exact.shape[1]


def run(opts: ModelOptions) -> None:
    """Both parts, then the report section and its plot."""
    stage = stage_rates(opts)
    index = index_rows(opts)
    _plot(stage)
    body = "\n\n".join([
        f"Machine: {machine()}.",
        "Encoder + exact search (the worker's `Recommender`), users/s by batch size; "
        "histories drawn from the e2e stream:\n\n"
        + table(["device", "index", "batch", "encode users/s", "search users/s",
                 "encode + search users/s"], stage),
        "Exact against approximate search on clustered synthetic catalogues (d = 64), "
        "batches of 256 queries:\n\n"
        + table(["items", "index", "nprobe", "recall@10", "queries/s", "build s"], index),
        f"![users/s by batch]({plot_path('model_batch').name})",
    ])
    append_section("bench model", body)


def _plot(rows: list[list[str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == label]
        ax.plot([r[2] for r in mine], [float(r[5].replace(",", "")) for r in mine],
                marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("users/s (encode + search)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(plot_path("model_batch"), dpi=100)
    plt.close(fig)
