"""Pick and build the item index, and say which one and why.

FAISS is an optional dependency (`pip install 'streamrec[cpu]'` brings faiss-cpu,
`'streamrec[gpu]'` faiss-gpu-cu12); the base install has none, and then the exact
torch index serves. The exact backends (torch, faiss flat) differ in speed, never in
results; the approximate kinds (`ann.py`: ivf, ivf-sq8, ivf-pq, hnsw, sq8, pq) trade a
measured share of recall for speed on large catalogues. `auto` picks, for the
catalogue size and the encoder's device:

    faiss importable, at least AUTO_APPROXIMATE_ITEMS items -> AUTO_APPROXIMATE_KIND
    faiss importable, device cuda, faiss sees a GPU        -> faiss-gpu (exact)
    device cuda, faiss missing or without GPU support      -> torch-cuda (a GPU matmul
                                                              beats faiss on the CPU)
    device cpu, a CPU with bfloat16 units (AVX-512 BF16,   -> torch-bf16: bfloat16 scores
      AMX), at least AUTO_BF16_ITEMS items                    pick candidates, re-scored
                                                              in float32
    device cpu                                             -> torch-cpu (measured faster
                                                              than FAISS flat:
                                                              docs/BENCHMARKS.md)

The choice and its reason are logged once, and the built index's `name` is what the
worker reports as `streamrec_model_info{index=...}`. Kept apart from `base.py` so the
backends import the shape they implement and this module imports the backends.
"""

from __future__ import annotations

import functools
import logging
from importlib import metadata
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from streamrec.index.base import ItemIndex
from streamrec.index.errors import IndexBuildError
from streamrec.index.params import KINDS, AnnParams

logger = logging.getLogger(__name__)

Backend = Literal["auto", "faiss", "torch", "torch-bf16", "ivf", "ivf-sq8", "ivf-pq", "hnsw",
                  "sq8", "pq"]
APPROXIMATE_KINDS = tuple(KINDS)
TORCH_KINDS = ("torch", "torch-bf16")  # served by index/torch_index.py, faiss or not
# `auto` serves this approximate kind from this many items up (faiss installed), and
# exact search below. Measured on the 2-core box (games model grown, 1 thread, batch
# 256, docs/BENCHMARKS.md 2026-12-03): at 100k items exact serves 5,393 users/s,
# under what one worker ingests, and ivf-sq8 19,227 at recall@10 0.976 (3.6x, a
# quarter of IVF-Flat's memory); at 1M exact 80, ivf-sq8 5,651. Below 100k the cost of
# the lost recall in NDCG is not measured yet, so exact stays.
AUTO_APPROXIMATE_ITEMS = 100_000
AUTO_APPROXIMATE_KIND = "ivf-sq8"
# `auto` on a CPU with bfloat16 units serves `torch-bf16` from this many items up (and
# below AUTO_APPROXIMATE_ITEMS). Measured on the games model (23,715 items, AMD EPYC
# with AVX-512 BF16, 1 thread, 2026-12-04): its search 1.6-2.5x faster than float32
# exact at batches 16-1024, recall@10 1.000 on 2,000 stored validation queries, the
# same top 10 for every one of 4,096 real histories. Below 10,000 items the matmul
# is not what a search costs and float32 stays.
AUTO_BF16_ITEMS = 10_000
INSTALL_HINT = ("pip install 'streamrec[cpu]' for faiss-cpu, or 'streamrec[gpu]' for "
                "faiss-gpu-cu12 (not both: they ship the same module)")


def build_index(
    embeddings: np.ndarray, backend: Backend = "auto", device: str = "auto",
    params: AnnParams | None = None, stored: Path | None = None,
) -> ItemIndex:
    """An inner-product index over `embeddings` ([V + 1, d], row 0 padding).

    `backend` "faiss" refuses to start without faiss (IndexBuildError), as do the
    approximate kinds; "torch" and "torch-bf16" never use it; "auto" chooses as the
    module docstring says. `device` is the encoder's: auto, cpu, cuda[:N]. An
    approximate index is read from `stored` (a checkpoint directory, `store.py`) when
    one there fits, else built with `params`.
    """
    if backend not in get_args(Backend):
        raise IndexBuildError(f"unknown index backend {backend!r}; choose one of "
                              f"{', '.join(get_args(Backend))}")
    from streamrec.common.devices import cpu_has_fast_bfloat16  # torch: not at import (CLI)

    torch_only = backend in TORCH_KINDS
    faiss_gpus, faiss_error = probe_faiss() if not torch_only else (0, "not asked for")
    if backend != "auto" and not torch_only and faiss_error is not None:
        raise IndexBuildError(f"--index {backend} needs faiss, which is not importable "
                              f"({faiss_error}): {INSTALL_HINT}")
    on_cuda = device != "cpu" and _cuda_device(device)
    kind, reason = choose_backend(backend, on_cuda, faiss_gpus, faiss_error,
                                  items=embeddings.shape[0] - 1,
                                  fast_bf16=not on_cuda and cpu_has_fast_bfloat16())
    if kind in APPROXIMATE_KINDS:
        index = _approximate(embeddings, kind, params, device, stored)
    elif kind == "faiss":
        from streamrec.index.faiss_index import FaissIndex

        index = FaissIndex(embeddings, device=device)
    else:
        from streamrec.index.torch_index import TorchIndex

        bf16 = kind == "torch-bf16"
        index = TorchIndex(embeddings, device=device,
                           score_dtype="bfloat16" if bf16 else "float32", rescore=bf16)
    logger.info("index backend %s: %s", index.name, reason)
    return index


def _approximate(embeddings: np.ndarray, kind: str, params: AnnParams | None, device: str,
                 stored: Path | None) -> ItemIndex:
    """The stored index of `kind` when it fits, else one built now (and why)."""
    from streamrec.index.ann import AnnIndex
    from streamrec.index.store import load_stored

    params = params or AnnParams()
    if stored is not None:
        index, why_not = load_stored(stored, embeddings, kind, params, device)
        if index is not None:
            return index
        logger.info("building a %s index: %s", kind, why_not)
    return AnnIndex(embeddings, kind, params, device=device)


def choose_backend(
    backend: Backend, on_cuda: bool, faiss_gpus: int, faiss_error: str | None,
    items: int = 0, fast_bf16: bool = False,
) -> tuple[str, str]:
    """(the index kind: "faiss", "torch", "torch-bf16" or an approximate kind, why) for
    the situation described (`fast_bf16`: the CPU has bfloat16 units); no side effects."""
    if backend != "auto":
        return backend, f"--index {backend} was asked for"
    if fast_bf16 and not on_cuda and AUTO_BF16_ITEMS <= items < AUTO_APPROXIMATE_ITEMS:
        return "torch-bf16", (
            f"this CPU has bfloat16 units and the catalogue has {items:,} items: bfloat16 "
            "scores pick the candidates, re-scored in float32 (recall measured at load; "
            "docs/BENCHMARKS.md); --index torch for float32 exact search")
    if faiss_error is not None:
        big = (f"; {items:,} items would be served approximately ({AUTO_APPROXIMATE_KIND}) "
               "with faiss" if items >= AUTO_APPROXIMATE_ITEMS else "")
        return "torch", f"faiss is not importable ({faiss_error}); exact torch search{big}; " \
                        f"{INSTALL_HINT}"
    if items >= AUTO_APPROXIMATE_ITEMS:
        return AUTO_APPROXIMATE_KIND, (
            f"{items:,} items, at least {AUTO_APPROXIMATE_ITEMS:,}: approximate search, "
            "whose recall is measured at load (exact search on this many items serves "
            "too few users per second: docs/BENCHMARKS.md)")
    if on_cuda and faiss_gpus > 0:
        return "faiss", f"faiss sees {faiss_gpus} GPU(s)"
    if on_cuda:
        return "torch", ("the encoder runs on CUDA but this faiss has no GPU support "
                         "(faiss-cpu): exact torch search on the GPU instead of faiss on "
                         "the CPU; 'streamrec[gpu]' installs faiss-gpu-cu12")
    return "torch", ("the encoder runs on the CPU, where exact torch search (one matmul, "
                     "history masked before the top-k) beat FAISS flat, which must fetch "
                     "k + history candidates and filter (docs/BENCHMARKS.md); --index faiss "
                     "to use it")


def probe_faiss() -> tuple[int, str | None]:
    """(GPUs faiss can use, None) when faiss imports; (0, the import error) when not."""
    try:
        import faiss
    except ImportError as exc:
        return 0, str(exc) or type(exc).__name__
    check_faiss_distributions()
    has_gpu = hasattr(faiss, "StandardGpuResources")
    return (int(faiss.get_num_gpus()) if has_gpu else 0), None


@functools.cache
def check_faiss_distributions() -> None:
    """Warn when several distributions installed the faiss module. Once per process:
    reading every installed package's metadata takes 50-100 ms, on the loader thread
    of a hot swap too, where it holds the GIL the poll loop needs."""
    providers = sorted(set(metadata.packages_distributions().get("faiss", [])))
    if len(providers) > 1:
        logger.warning("several distributions install the faiss module (%s); the last one "
                       "installed overwrote the others' files: uninstall all but one",
                       ", ".join(providers))


def _cuda_device(device: str) -> bool:
    from streamrec.common.devices import resolve_device

    return resolve_device(device).type == "cuda"
