"""Pick and build the item index: FAISS when it is installed, else exact torch.

Kept apart from `base.py` so the backends import the shape they implement and
this module imports the backends, never the other way round.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from streamrec.index.base import ItemIndex
from streamrec.index.errors import IndexBuildError

logger = logging.getLogger(__name__)

Backend = Literal["auto", "faiss", "torch"]


def build_index(
    embeddings: np.ndarray, backend: Backend = "auto", device: str = "auto"
) -> ItemIndex:
    """The best available exact index over `embeddings` ([V + 1, d], row 0 padding).

    `auto` uses FAISS when importable (on GPU when faiss has GPUs), else torch.
    """
    if backend in ("auto", "faiss"):
        try:
            from streamrec.index.faiss_index import FaissIndex
        except ImportError:
            if backend == "faiss":
                raise IndexBuildError(
                    "faiss is not installed: pip install faiss-cpu (or streamrec[gpu])"
                ) from None
        else:
            return FaissIndex(embeddings, device=device)
    from streamrec.index.torch_index import TorchIndex

    return TorchIndex(embeddings, device=device)
