"""Exact inner-product search with torch: one matmul and a top-k.

The fallback when faiss is absent, and the GPU path on hosts without faiss-gpu:
on CUDA a [B, d] x [d, V] matmul plus `topk` is as exact as `IndexFlatIP` and fast.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from streamrec.common.devices import resolve_device
from streamrec.index.base import ItemIndex, SearchResult

logger = logging.getLogger(__name__)


class TorchIndex(ItemIndex):
    """Item table held as a torch tensor on `device` (cuda when available under auto)."""

    def __init__(self, embeddings: np.ndarray, device: str = "auto") -> None:
        super().__init__(embeddings)
        self.device = resolve_device(device)
        table = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
        self._table = table.to(self.device)  # [V + 1, d]
        self._table_t = self._table.T.contiguous()  # [d, V + 1]: the matmul's layout
        # Queries per scoring chunk: on a CPU, [chunk, V + 1] float32 scores of about
        # 4 MiB stay in cache; a GPU takes the whole batch at once.
        cpu_chunk = max(1, min(4096, (1 << 20) // self.num_rows))
        self.chunk = cpu_chunk if self.device.type == "cpu" else 1 << 16
        self.name = f"torch-{self.device.type}"
        logger.info("built %s index: %d rows x %d dims", self.name, self.num_rows, self.dim)

    @torch.inference_mode()
    def _masked_search(self, queries: np.ndarray, k: int, excl: np.ndarray) -> SearchResult:
        """Score every item, set padding and excluded rows to -inf, take the top-k.

        Queries go in chunks so each chunk's [chunk, V + 1] scores stay in cache
        (scoring a whole batch at once is bound by memory bandwidth on a CPU).
        """
        batch = queries.shape[0]
        k_eff = min(k, self.num_rows - 1)
        rows = np.empty((batch, k_eff), dtype=np.int64)
        scores = np.empty((batch, k_eff), dtype=np.float32)
        q_all = torch.as_tensor(queries, device=self.device)
        banned_all = torch.as_tensor(np.where(excl < 0, 0, excl), device=self.device)
        for start in range(0, batch, self.chunk):
            stop = min(start + self.chunk, batch)
            s = q_all[start:stop] @ self._table_t  # [c, V + 1]
            s[:, 0] = -torch.inf  # padding row, and the -1 pads of excl mapped to it
            if banned_all.shape[1]:
                s.scatter_(1, banned_all[start:stop], -torch.inf)
            top = torch.topk(s, k=k_eff, dim=1)
            rows[start:stop] = top.indices.cpu().numpy()
            scores[start:stop] = top.values.float().cpu().numpy()
        out_rows, out_scores = rows, scores
        gone = ~np.isfinite(out_scores)  # fewer than k items left after the exclusions
        out_rows[gone] = -1
        if k_eff < k:
            out_rows = np.pad(out_rows, ((0, 0), (0, k - k_eff)), constant_values=-1)
            out_scores = np.pad(out_scores, ((0, 0), (0, k - k_eff)),
                                constant_values=-np.inf)
        return SearchResult(rows=out_rows, scores=out_scores)

    @torch.inference_mode()
    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.as_tensor(queries, device=self.device)  # [B, d]
        scores = q @ self._table.T  # [B, V + 1]
        scores[:, 0] = -torch.inf  # padding row is never a candidate
        top = torch.topk(scores, k=min(n, self.num_rows - 1), dim=1)
        return top.indices.cpu().numpy().astype(np.int64), top.values.float().cpu().numpy()
