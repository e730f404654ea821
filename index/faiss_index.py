"""FAISS exact inner-product index, on the GPU when faiss has one.

Flat (exact) search: the item table of a sequential recommender is tens of thousands
to a few million rows, where exact search on a GPU is fast and gives exactly the
model's top-k. Row 0 (padding) is kept in the table so FAISS ids equal item rows; the
shared filter in `base.py` drops it.
"""

from __future__ import annotations

import logging
import time

import faiss
import numpy as np

from streamrec.index.base import ItemIndex

logger = logging.getLogger(__name__)


class FaissIndex(ItemIndex):
    """`faiss.IndexFlatIP` over the item table, moved to GPU 0 when available."""

    def __init__(self, embeddings: np.ndarray, device: str = "auto") -> None:
        super().__init__(embeddings)
        start = time.perf_counter()
        table = np.ascontiguousarray(embeddings, dtype=np.float32)
        index = faiss.IndexFlatIP(self.dim)
        use_gpu = device != "cpu" and hasattr(faiss, "StandardGpuResources") and (
            faiss.get_num_gpus() > 0
        )
        if use_gpu:
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        index.add(table)
        self._index = index
        self.name = "faiss-gpu" if use_gpu else "faiss-cpu"
        logger.info(
            "built %s index: %d rows x %d dims in %.3fs",
            self.name, self.num_rows, self.dim, time.perf_counter() - start,
        )

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        # n + 1 because row 0 (padding) may take a slot; the shared filter drops it.
        scores, rows = self._index.search(queries, min(n + 1, self.num_rows))
        return rows.astype(np.int64, copy=False), scores
