"""`streamrec bench model`: the model stage alone, and exact against approximate search.

1. Encoder + search (what `Recommender.encode` + `Recommender.search` do for the
   worker) in users/s by batch size, on histories drawn from the stream the e2e
   benchmark uses (so their lengths are realistic), at 1 thread and at every core,
   and on CUDA when torch sees a GPU.
2. The games model with its item table grown to 100k and 1M items (`catalogue.py`):
   every `--index` kind, exact (torch, FAISS flat) and approximate (IVF flat, SQ8,
   PQ, HNSW): recall@10 against exact on the model's encodings of real histories,
   queries/s and model-stage users/s at batch 256, build seconds, bytes per item.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.bench.contenders import bench_model, load_stream
from streamrec.bench.report import ROOT, append_section, link, machine, run_file, table

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelOptions:
    """What `bench model` measures."""

    model: Path | None = None
    batches: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096)
    catalogues: tuple[int, ...] = (100_000, 1_000_000)
    seconds: float = 2.0  # per measurement
    queries: int = 2048
    workdir: Path = ROOT / ".cache" / "bench"
    against: Path | None = None  # instead: this checkpoint's model stage beside `model`'s
    rounds: int = 5  # side by side: alternations of the two models per batch size


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

    from streamrec.worker.recommend import set_faiss_threads

    torch.set_num_threads(threads)
    set_faiss_threads(threads)


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


# (--index, its variants as (nprobe, rescore); 0 = as the worker loads it: the stored or
# chosen nprobe, the kind's re-scoring). ivf-sq8 also with its codes' own scores.
KIND_ROWS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("torch", ((0, 0),)), ("torch-bf16", ((0, 0),)), ("faiss", ((0, 0),)),
    ("ivf", ((8, 0), (0, 0), (32, 0))),
    ("ivf-sq8", ((8, 0), (0, 0), (16, 0), (24, 0), (32, 0), (32, 1), (54, 1))),
    ("ivf-pq", ((0, 0),)), ("hnsw", ((0, 0),)))


def catalogue_rows(opts: ModelOptions) -> list[list[str]]:
    """Every index kind over the games table grown to each catalogue size
    (`catalogue.py`): recall@10 against exact on the model's encodings of real
    histories, search queries/s and model-stage users/s at batch 256 (history
    excluded, as the worker searches), build seconds, bytes per item."""
    import dataclasses

    from streamrec.bench.catalogue import grow_checkpoint
    from streamrec.index.recall import recall_at_k
    from streamrec.worker.recommend import Recommender

    model = bench_model(opts.model, opts.workdir)
    stream = load_stream(10**9, 30_000)
    out = []
    for items in opts.catalogues:
        grown = grow_checkpoint(model, items, opts.workdir / f"games-grown-{items}")
        set_threads(1)
        for kind, variants in KIND_ROWS:
            try:
                r = Recommender.load(grown, "cpu", backend=kind, threads=1)
            except Exception as exc:  # e.g. faiss missing: the row says so
                out.append([f"{items:,}", kind, "-", "-", "-", "-", "-", "-", str(exc)[:60]])
                continue
            histories, lengths = sample_histories(stream, r, opts.queries)
            queries = r.encode(histories, lengths).queries
            table = r.checkpoint.model.item_embeddings().detach().float().numpy()
            h, n, q = histories[:256], lengths[:256], queries[:256]
            built = r.index
            for nprobe, rescore in variants:
                r.index = built
                if (nprobe or rescore) and built.approximate:
                    params = dataclasses.replace(built.params, nprobe=nprobe or built.params.nprobe,
                                                 rescore=rescore or built.params.rescore)
                    r.index = type(built)(table, kind, params, built=built.cpu_index)
                rec = recall_at_k(r.index, table, queries) if r.index.approximate else 1.0
                qps = rate(lambda q=q, h=h, r=r: r.index.search(q, 10, h), len(q),
                           opts.seconds)
                stage = rate(lambda h=h, n=n, r=r: r.search(r.encode(h, n), h, 10), len(h),
                             opts.seconds)
                name, detail = r.index.name, _describe(r.index)
                print(f"[bench] {items:,} items {name} {detail}: recall@10 {rec:.3f}, "
                      f"{qps:,.0f} q/s, stage {stage:,.0f} users/s", flush=True)
                out.append([f"{items:,}", name, detail, f"{rec:.3f}", f"{qps:,.0f}",
                            f"{stage:,.0f}", f"{getattr(built, 'build_s', 0.0):.1f}",
                            f"{built.item_bytes():,.0f}", ""])
                if kind == "ivf-sq8" and not (nprobe or rescore):
                    # as the worker serves it: the encoder on 1 thread (--torch-threads
                    # 1), FAISS on every core (--index-threads 0)
                    from streamrec.worker.recommend import set_faiss_threads

                    set_faiss_threads(2)
                    two = rate(lambda h=h, n=n, r=r: r.search(r.encode(h, n), h, 10), len(h),
                               opts.seconds)
                    set_threads(1)
                    print(f"[bench] {items:,} items {name} {detail}, FAISS 2 threads: stage "
                          f"{two:,.0f} users/s", flush=True)
                    out.append([f"{items:,}", name, f"{detail}, FAISS on 2 threads",
                                f"{rec:.3f}", "-", f"{two:,.0f}", "-", "-",
                                "the worker's default: encoder 1 thread, FAISS every core"])
            if kind == "ivf-sq8":  # the other way to exclude the history: FAISS ID selectors
                qps = rate(lambda q=q, h=h, b=built: selector_search(b, q, h, 10), len(q),
                           opts.seconds)
                print(f"[bench] {items:,} items {built.name} per-query ID selector: "
                      f"{qps:,.0f} q/s", flush=True)
                out.append([f"{items:,}", built.name, f"{_describe(built)}, ID selector",
                            "-", f"{qps:,.0f}", "-", "-", "-",
                            "one search per user, history excluded by an IDSelectorNot"])
    set_threads(os.cpu_count() or 1)
    return out


def selector_search(index: object, queries: np.ndarray, histories: np.ndarray,
                    k: int) -> list[np.ndarray]:
    """Top-k per query with the history (and row 0) excluded inside FAISS, by an ID
    selector per query: the alternative to one batched over-fetch and a filter."""
    import faiss

    found = []
    for q, h in zip(queries, histories, strict=True):
        banned = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.append(h[h > 0], 0)))
        params = faiss.SearchParametersIVF(sel=banned, nprobe=index.params.nprobe)  # type: ignore[attr-defined]
        found.append(index.cpu_index.search(q[None], k, params=params)[1])  # type: ignore[attr-defined]
    return found


def _describe(index: object) -> str:
    describe = getattr(index, "describe", None)
    return describe() if describe is not None else "exact"




def side_by_side(opts: ModelOptions) -> list[list[str]]:
    """The model stage (encode + exact search, history excluded) of `opts.model` and
    `opts.against` at each batch size on 1 thread, the two alternated `opts.rounds`
    times, so that both see the same phases of a shared machine; median users/s each."""
    from streamrec.worker.recommend import Recommender

    assert opts.against is not None
    paths = {"model": bench_model(opts.model, opts.workdir), "against": opts.against}
    recommenders = {name: Recommender.load(path, "cpu") for name, path in paths.items()}
    stream = load_stream(10**9, 30_000)
    set_threads(1)
    rows = []
    for batch in opts.batches:
        inputs = {name: sample_histories(stream, r, batch) for name, r in recommenders.items()}
        seen: dict[str, list[float]] = {name: [] for name in recommenders}
        for _ in range(opts.rounds):
            for name, r in recommenders.items():
                h, n = inputs[name]
                seen[name].append(rate(lambda h=h, n=n, r=r: r.search(r.encode(h, n), h, 10),
                                       batch, opts.seconds))
        base, other = (statistics.median(seen[name]) for name in ("model", "against"))
        print(f"[bench] batch {batch}: {base:,.0f} vs {other:,.0f} users/s "
              f"({other / base:.2f}x)", flush=True)
        rows.append([batch, f"{base:,.0f}", f"{other:,.0f}", f"{other / base:.2f}x",
                     f"{min(seen['against']) / max(seen['model']):.2f}-"
                     f"{max(seen['against']) / min(seen['model']):.2f}"])
    set_threads(os.cpu_count() or 1)
    return rows


def run_side_by_side(opts: ModelOptions) -> None:
    """`bench model --against`: the two checkpoints' model stage, the report section."""
    assert opts.against is not None
    rows = side_by_side(opts)
    model = opts.model or "the games preset's bench model"
    body = "\n\n".join([
        f"Machine: {machine()}.",
        f"The model stage (encode + exact search, history excluded, k 10) of `{model}` "
        f"(A) and `{opts.against}` (B) on 1 thread, histories of the e2e stream; "
        f"{opts.rounds} rounds of {opts.seconds:g} s each, A and B alternated, median "
        "users/s; the range is B's slowest over A's fastest round to the reverse:\n\n"
        + table(["batch", "A users/s", "B users/s", "B / A", "B / A range"], rows),
    ])
    append_section("bench model (two checkpoints side by side)", body)


def run(opts: ModelOptions) -> None:
    """Both parts, then the report section and its plot (`--against`: the comparison)."""
    if opts.against is not None:
        run_side_by_side(opts)
        return
    stage = stage_rates(opts)
    index = catalogue_rows(opts)
    plot = _plot(stage)
    body = "\n\n".join([
        f"Machine: {machine()}.",
        "Encoder + exact search (the worker's `Recommender`), users/s by batch size; "
        "histories drawn from the e2e stream:\n\n"
        + table(["device", "index", "batch", "encode users/s", "search users/s",
                 "encode + search users/s"], stage),
        "Exact against approximate search on the games table grown to each catalogue size "
        "(perturbed copies around its own clusters: benchmarks/catalogue.py); recall@10 "
        "against exact on the model's encodings of real histories; batches of 256, the "
        "history excluded; 1 thread:\n\n"
        + table(["items", "index", "parameters", "recall@10", "search queries/s",
                 "stage users/s", "build s", "bytes/item", "note"], index),
        f"![users/s by batch]({link(plot)})",
    ])
    append_section("bench model", body)


def _plot(rows: list[list[str]]) -> Path:
    """The users/s-by-batch plot, saved under this run's own name; its path."""
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
    path = run_file("model_batch")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
