"""What an approximate index is and how it is built and searched, without FAISS.

The worker's configuration and the command line name these; only `ann.py` (which
imports faiss) builds from them, so a worker without faiss still parses its flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamrec.index.errors import IndexBuildError

# --index value -> FAISS factory string ({nlist}, {m}: filled by `AnnParams`)
KINDS: dict[str, str] = {
    "ivf": "IVF{nlist},Flat",
    "ivf-sq8": "IVF{nlist},SQ8",
    "ivf-pq": "IVF{nlist},PQ{pq_m}x8",
    "hnsw": "HNSW{hnsw_m},Flat",
    "sq8": "SQ8",  # every item scored, from 8-bit codes: a quarter of float32's memory
    "pq": "PQ{pq_m}x8",  # every item scored, from product-quantizer codes (pq_m bytes)
}
FLAT_KINDS = ("sq8", "pq")  # quantized but exhaustive: no lists, no graph
QUANTIZED_KINDS = ("ivf-sq8", "ivf-pq", "sq8", "pq")  # scores from codes, not float32
# Candidates fetched per result and ranked again by their float32 scores, for kinds
# whose codes round the scores (--rescore 0). The worker holds the float32 table
# anyway. On the 1M-item games table (docs/BENCHMARKS.md, 2026-12-07 15:53-16:45)
# ivf-sq8 with twice the candidates re-scored found 0.960 of the exact top 10 with 32
# lists at 10,903 searches/s, where SQ8 scores alone needed 54 lists (0.959, 8,277/s);
# 4 times the candidates found no more than twice.
DEFAULT_RESCORE = 2
TRAIN_POINTS_PER_LIST = 64  # k-means sample: FAISS warns below 39 per centroid
# IVF lists searched per query when --nprobe is 0. Recall on the model's real queries
# follows the number of lists probed more than their count: on the grown games table
# (docs/BENCHMARKS.md 2026-12-03) 16 of 4,000 lists gave recall@10 0.957 (SQ8) and
# 0.979 (flat) at 1M items and 11,400 users/s, where nlist / 64 (62 lists) gave 0.975
# at 5,700 users/s.
DEFAULT_NPROBE = 16
# With --nprobe 0, an IVF index's lists searched start at DEFAULT_NPROBE and grow by this
# factor until recall@10 on the model's own query sample reaches TUNED_RECALL (or the
# worker's --min-recall, if higher): the same 16 lists found 0.955 of the exact top 10
# for one games model grown to 1M items and 0.898 for another trained the same way on
# another day (docs/BENCHMARKS.md, 2026-12-07 15:53-16:45), which the worker refused.
# Steps of 1.25 (16, 20, 25, 32, 40, ...) overshoot the breadth needed by at most a
# quarter: with steps of 1.5 that model's re-scored SQ8 went from 24 lists (0.948) to
# 36 (0.963), where 32 found 0.960 at about 10% more searches/s (2026-12-07 19:05).
NPROBE_GROWTH = 1.25
TUNED_RECALL = 0.95
# A step that raises the sample's recall@10 by less than this is undone and the widening
# stops: product-quantizer codes ranked by their own scores cap recall (ivf-pq at 1M
# items: 0.38 with every list searched), and more lists then only cost time. On the
# 1M-item games table steps of 1.5 from 16 lists gained 0.015-0.03 (docs/BENCHMARKS.md,
# 2026-12-07 15:53-16:45), so steps of 1.25 gain about half of that.
MIN_WIDEN_GAIN = 0.005


@dataclass(frozen=True)
class AnnParams:
    """Build and search parameters; 0 means "derived from the catalogue size"."""

    nlist: int = 0  # IVF lists; 0: 4 * sqrt(V), the FAISS guideline, within [1, V / 39]
    nprobe: int = 0  # IVF lists searched per query; 0: DEFAULT_NPROBE (at most nlist)
    ef_search: int = 128  # HNSW candidates kept while searching (at least k + history)
    hnsw_m: int = 32  # HNSW links per node
    pq_m: int = 0  # PQ sub-quantizers; 0: d / 4 (16 bytes per item at d = 64)
    # candidates per result re-scored in float32; 0: DEFAULT_RESCORE for quantized
    # codes, 1 (none) for float32 lists and graphs, whose scores are exact already
    rescore: int = 0

    def __post_init__(self) -> None:
        for name in ("nlist", "nprobe", "ef_search", "hnsw_m", "pq_m", "rescore"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ef_search < 1 or self.hnsw_m < 2:
            raise ValueError(f"ef_search must be >= 1 and hnsw_m >= 2, got "
                             f"{self.ef_search} and {self.hnsw_m}")

    def resolved(self, items: int, dim: int, kind: str) -> AnnParams:
        """These parameters for a `kind` index, with every 0 replaced by its derived value."""
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(items)), items // 39))
        nprobe = min(nlist, self.nprobe or DEFAULT_NPROBE)
        pq_m = self.pq_m or max(1, dim // 4)
        if dim % pq_m:
            raise IndexBuildError(f"--pq-m {pq_m} must divide the item dimension {dim}")
        rescore = self.rescore or (DEFAULT_RESCORE if kind in QUANTIZED_KINDS else 1)
        return AnnParams(nlist=nlist, nprobe=nprobe, ef_search=self.ef_search,
                         hnsw_m=self.hnsw_m, pq_m=pq_m, rescore=rescore)
