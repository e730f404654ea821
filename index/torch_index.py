"""Exact inner-product search with torch: one matmul and a top-k.

The fallback when faiss is absent, and the GPU path on hosts without faiss-gpu:
on CUDA a [B, d] x [d, V] matmul plus `topk` is as exact as `IndexFlatIP` and fast.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from streamrec.common.devices import resolve_device
from streamrec.index.base import ItemIndex

logger = logging.getLogger(__name__)


class TorchIndex(ItemIndex):
    """Item table held as a torch tensor on `device` (cuda when available under auto)."""

    def __init__(self, embeddings: np.ndarray, device: str = "auto") -> None:
        super().__init__(embeddings)
        self.device = resolve_device(device)
        table = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
        self._table = table.to(self.device)  # [V + 1, d]
        self.name = f"torch-{self.device.type}"
        logger.info("built %s index: %d rows x %d dims", self.name, self.num_rows, self.dim)

    @torch.inference_mode()
    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.as_tensor(queries, device=self.device)  # [B, d]
        scores = q @ self._table.T  # [B, V + 1]
        scores[:, 0] = -torch.inf  # padding row is never a candidate
        top = torch.topk(scores, k=min(n, self.num_rows - 1), dim=1)
        return top.indices.cpu().numpy().astype(np.int64), top.values.float().cpu().numpy()
