"""Approximate inner-product search with FAISS: IVF (flat, SQ8, PQ codes), HNSW, and
exhaustive search over quantized codes (SQ8, PQ).

Exact search costs one multiply-add per item and dimension for every query: about
100 users/s per core at a million items. An approximate index looks at a few
clusters of items (IVF: the `nprobe` of `nlist` closest lists, their vectors stored
as float32, as 8-bit scalars, or as product-quantizer codes) or walks a graph
(HNSW: `ef_search` candidates), or scores every item from compressed codes (`sq8`,
`pq`: the item table's memory cut 4 or 16 times), and misses a few of the true top
k: the served index's recall@10 against exact search is measured at load
(`recall.py`). An IVF index whose `nprobe` was not asked for may `widen`: search
NPROBE_GROWTH times as many lists, a step at a time, until that recall reaches its
target. Codes round the scores, so the quantized kinds fetch `rescore` (2) times the
candidates and rank them again by their float32 scores from the item table (the
caller's array, held by reference): the same recall from fewer lists
(`AnnIndex.search`).

Two guarantees the exact index gives are kept:

- the user's history is never recommended: `search` (base.py) asks for k + m
  candidates, m the longest history in the batch, and drops excluded rows;
- every user gets k items when the catalogue has them: a row left short (its lists
  held too few items outside its history) is searched again exhaustively over the
  same stored vectors (every IVF list; HNSW's flat storage), so nothing depends on
  the probe count.

Items retired from the catalogue (`ItemIndex.set_unavailable`) are skipped inside
FAISS through an `IDSelectorBitmap` (`faiss_index.bitmap_selector`) passed with the
search parameters, so a large retired set costs no over-fetch; a query whose lists
hold mostly retired items comes back short and takes the exhaustive pass above,
selector included. `pq` (FAISS refuses selectors on `IndexPQ`) and GPU indexes fall
back to fetching past every retired row.

The index is built from the item table (k-means for IVF, and the quantizer's
training) and can be written with `faiss.write_index` (its own binary format, no
pickle; `store.py`) so a worker loads it instead of training it again. On a host
where faiss sees a GPU, IVF kinds are copied to GPU 0 (HNSW, sq8 and pq stay on the
CPU).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import faiss
import numpy as np

from streamrec.index import faiss_threads
from streamrec.index.base import ItemIndex, SearchResult, drop_excluded, pad_exclusions
from streamrec.index.errors import IndexBuildError
from streamrec.index.faiss_index import BitmapSelector, bitmap_selector
from streamrec.index.params import (
    FLAT_KINDS,
    KINDS,
    NPROBE_GROWTH,
    TRAIN_POINTS_PER_LIST,
    AnnParams,
)

logger = logging.getLogger(__name__)


class AnnIndex(ItemIndex):
    """A FAISS approximate index over the item table; row 0 (padding) is stored too, so
    FAISS ids equal item rows, and the shared filter drops it."""

    approximate = True

    def __init__(self, embeddings: np.ndarray, kind: str, params: AnnParams | None = None,
                 device: str = "auto", built: faiss.Index | None = None) -> None:
        super().__init__(embeddings)
        if kind not in KINDS:
            raise IndexBuildError(f"unknown approximate index {kind!r}; choose one of "
                                  f"{', '.join(KINDS)}")
        self.kind = kind
        self.params = (params or AnnParams()).resolved(self.num_rows - 1, self.dim, kind)
        # the float32 table candidates are re-scored from: the caller's own array (the
        # worker's item table), not a copy, when it is float32 already
        self._table = (np.ascontiguousarray(embeddings, dtype=np.float32)
                       if self.params.rescore > 1 else None)
        # --nprobe 0: the lists searched are this index's to choose (`widen`)
        self.nprobe_asked = params is not None and params.nprobe > 0
        self._narrower: list[AnnParams] = []  # the parameters before each `widen`
        start = time.perf_counter()
        self.cpu_index = built if built is not None else self._train(embeddings)
        self.build_s = time.perf_counter() - start if built is None else 0.0
        self._index = self.cpu_index
        on_gpu = (device != "cpu" and kind.startswith("ivf")
                  and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)
        if on_gpu:
            self._gpu_resources = faiss.StandardGpuResources()
            self._index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.cpu_index)
        self.name = f"faiss-{kind}" + ("-gpu" if on_gpu else "")
        self._selectors = not on_gpu and kind != "pq"  # FAISS filters ids itself
        logger.info("%s %s index: %d rows x %d dims (%s)%s", "built" if built is None
                    else "loaded", self.name, self.num_rows, self.dim, self.describe(),
                    f" in {self.build_s:.1f}s" if built is None else "")

    def describe(self) -> str:
        """The parameters that matter for this kind, as a short string."""
        p = self.params
        again = f", {p.rescore} x candidates re-scored" if p.rescore > 1 else ""
        if self.kind == "hnsw":
            return f"M {p.hnsw_m}, ef_search {p.ef_search}{again}"
        if self.kind in FLAT_KINDS:
            return "exhaustive" + (f", PQ {p.pq_m}x8" if self.kind == "pq" else ", SQ8") + again
        pq = f", PQ {p.pq_m}x8" if self.kind == "ivf-pq" else ""
        return f"nlist {p.nlist}, nprobe {p.nprobe}{pq}{again}"

    @property
    def chooses_nprobe(self) -> bool:
        """True for an IVF index whose nprobe was not asked for: it may `widen`, and a
        build stores the nprobe it chose (`store.py`)."""
        return self.kind.startswith("ivf") and not self.nprobe_asked

    def widen(self) -> bool:
        """An IVF index whose nprobe was not asked for searches NPROBE_GROWTH times as
        many lists from now on (at most all of them); False when it cannot."""
        p = self.params
        if not self.chooses_nprobe or p.nprobe >= p.nlist:
            return False
        self._narrower.append(p)
        self.params = dataclasses.replace(
            p, nprobe=min(p.nlist, math.ceil(p.nprobe * NPROBE_GROWTH)))
        return True

    def narrow(self) -> None:
        """Search as many lists as before the last `widen`."""
        if self._narrower:
            self.params = self._narrower.pop()

    def _train(self, embeddings: np.ndarray) -> faiss.Index:
        p = self.params
        spec = KINDS[self.kind].format(nlist=p.nlist, pq_m=p.pq_m, hnsw_m=p.hnsw_m)
        index = faiss.index_factory(self.dim, spec, faiss.METRIC_INNER_PRODUCT)
        table = np.ascontiguousarray(embeddings, dtype=np.float32)
        faiss_threads.apply()  # k-means and the quantizer's training run on OpenMP threads
        try:
            if not index.is_trained:
                sample = table[1:]
                limit = TRAIN_POINTS_PER_LIST * max(p.nlist, 256)
                if len(sample) > limit:
                    rows = np.random.default_rng(0).choice(len(sample), limit, replace=False)
                    sample = sample[np.sort(rows)]
                index.train(sample)
            index.add(table)
        except RuntimeError as exc:  # FAISS's C++ errors, e.g. too few items for PQ codebooks
            raise IndexBuildError(f"could not build a {self.kind} index over "
                                  f"{self.num_rows - 1:,} items ({spec}): "
                                  f"{str(exc).strip().splitlines()[0]}") from exc
        return index

    def _native_unavailable(self, rows: np.ndarray, mask: np.ndarray) -> BitmapSelector | None:
        return bitmap_selector(mask) if self._selectors else None

    def _selector(self) -> dict[str, faiss.IDSelector]:
        """`sel=` for FAISS's search parameters while some rows are unavailable."""
        native = self.unavailable.native
        return {"sel": native.selector} if isinstance(native, BitmapSelector) else {}

    def _search_params(self, n: int, exhaustive: bool = False) -> faiss.SearchParameters | None:
        p = self.params
        sel = self._selector()
        if self.kind in FLAT_KINDS:
            return faiss.SearchParameters(**sel) if sel else None
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(p.ef_search, n), **sel)
        return faiss.SearchParametersIVF(nprobe=p.nlist if exhaustive else p.nprobe, **sel)

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        # n + 1 because row 0 (padding) may take a slot; the shared filter drops it.
        n = min(n + 1, self.num_rows)
        faiss_threads.apply()
        scores, rows = self._index.search(queries, n, params=self._search_params(n))
        return rows.astype(np.int64, copy=False), scores

    def _exhaustive(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Search every stored vector (all IVF lists; HNSW's flat storage)."""
        n = min(n + 1, self.num_rows)
        faiss_threads.apply()
        if self.kind == "hnsw":
            storage = faiss.downcast_index(self.cpu_index.storage)
            sel = self._selector()
            scores, rows = storage.search(queries, n,
                                          params=faiss.SearchParameters(**sel) if sel else None)
        else:
            scores, rows = self._index.search(queries, n,
                                              params=self._search_params(n, exhaustive=True))
        return rows.astype(np.int64, copy=False), scores

    def search(self, queries: np.ndarray, k: int,
               exclude: list[np.ndarray] | np.ndarray | None = None) -> SearchResult:
        """As `ItemIndex.search`; rows the approximate pass left short of k items that
        the catalogue has are searched again exhaustively.

        With re-scoring, the first `rescore` x k candidates outside each query's
        exclusions are ranked again by their float32 scores: the exclusions are dropped
        first, so a long history costs FAISS a longer fetch but never the re-scoring
        (reading 2 x (k + 50) random rows of a 1M-item table took a third of the
        search's time at batch 256, 2026-12-07)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        wide = k * self.params.rescore if self._table is not None else k
        found = self._ranked(queries, super().search(queries, wide, exclude), k)
        short = np.flatnonzero((found.rows < 0).any(axis=1))
        if not len(short):
            return found
        excl = pad_exclusions(exclude, queries.shape[0])[short]
        gone = self.unavailable
        rows, scores = self._exhaustive(queries[short], min(
            wide + excl.shape[1] + self._overfetch(gone), self.num_rows - 1))
        again = self._ranked(queries[short], drop_excluded(rows, scores, excl, wide, gone.mask),
                             k)
        out_rows, out_scores = found.rows.copy(), found.scores.copy()
        out_rows[short], out_scores[short] = again.rows, again.scores
        logger.debug("%d of %d queries searched again exhaustively", len(short), len(found.rows))
        return SearchResult(rows=out_rows, scores=out_scores)

    def _ranked(self, queries: np.ndarray, found: SearchResult, k: int) -> SearchResult:
        """The best `k` of each query's candidates by their float32 scores (re-scoring),
        or `found` itself (it holds k already)."""
        if self._table is None or found.rows.shape[1] <= k:
            return found
        rows = found.rows
        exact = np.einsum("bnd,bd->bn", self._table[np.maximum(rows, 0)], queries)
        exact[rows < 0] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return SearchResult(rows=np.take_along_axis(rows, order, axis=1),
                            scores=np.take_along_axis(exact, order, axis=1))

    stored = True  # a quantizer's k-means takes seconds to minutes at a million items

    def item_bytes(self) -> float:
        """The serialized index (codes, lists, graph) per item."""
        return len(self.serialized()) / max(self.num_rows - 1, 1)

    def serialized(self) -> np.ndarray:
        """The CPU index in FAISS's binary format (what `store.py` writes)."""
        return faiss.serialize_index(self.cpu_index)

    @classmethod
    def from_file(cls, embeddings: np.ndarray, kind: str, params: AnnParams, path: Path,
                  device: str = "auto") -> AnnIndex:
        """An index read back from a file of `serialized()` bytes, checked against the
        table. FAISS reads the file itself: half the time of reading the bytes into an
        array and deserializing them (41 against 78 ms at 1M items), and no copy."""
        index = faiss.read_index(str(path))
        if index.ntotal != embeddings.shape[0] or index.d != embeddings.shape[1]:
            raise IndexBuildError(f"stored index holds {index.ntotal} x {index.d} vectors, "
                                  f"the item table is {embeddings.shape[0]} x "
                                  f"{embeddings.shape[1]}")
        return cls(embeddings, kind, params, device=device, built=index)
