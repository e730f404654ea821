"""The item index: nearest item embeddings for a batch of query vectors.

`build_index` picks the implementation: FAISS (an optional extra: GPU when faiss
sees one, else CPU) when faiss is installed, otherwise an exact torch matmul + top-k
(which also runs on CUDA, and is preferred there over faiss without GPU support); it
logs which and why. Both return exactly the model's top-k by inner product, minus
excluded items.

May import: `streamrec.common` only (never the encoder: it takes numpy arrays).
"""

from streamrec.index.base import ItemIndex, SearchResult
from streamrec.index.build import build_index

__all__ = ["ItemIndex", "SearchResult", "build_index"]
