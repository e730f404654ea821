"""A million-item catalogue that behaves like trained item vectors.

The games model knows 23,716 items. To measure search over a catalogue a shop with a
million products would have, its trained item table is grown by perturbed copies
around its own clusters: the table is clustered (k-means, `CLUSTERS` centroids),
each new item copies a random trained item and moves it by Gaussian noise scaled to
the spread of that item's cluster (`SPREAD` of its residual standard deviation).
The new vectors keep the trained table's norms, directions and cluster structure,
which an approximate index's recall depends on, where isotropic Gaussian vectors
would be unrealistically hard (no structure) or easy (well-separated blobs). The
encoder is the trained one, so the queries are the model's own encodings of real
histories of the games log (whose items are the original rows): the recall measured
on them is the recall users would get.

Why not a generated log of a million items with power-law popularity? Training on
it would give vectors shaped by the generator, not by real behaviour, and cost an
hour of the box; growing keeps the real model and real queries.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

CLUSTERS = 256
SPREAD = 0.5  # noise of a copy, as a share of its cluster's residual standard deviation
NEW_ITEM_COUNT = 1.0  # training count given to grown items (they rank last as popular)


def grow_checkpoint(model_dir: Path, items: int, out: Path, seed: int = 0) -> Path:
    """A checkpoint at `out` with the model of `model_dir` and its item table grown to
    `items` items (returned at once when `out` already holds one)."""
    from streamrec.encoder.checkpoint import load_checkpoint, save_checkpoint
    from streamrec.encoder.model import SASRec
    from streamrec.encoder.vocab import ItemVocab

    if (out / "config.json").is_file():
        return out
    ckpt = load_checkpoint(model_dir)
    table = ckpt.model.item_embeddings().detach().float().numpy()
    known = len(ckpt.vocab)
    if items <= known:
        raise ValueError(f"{items:,} items is not more than the model's {known:,}")
    grown = grow_table(table, items, seed)
    config = dataclasses.replace(ckpt.config, num_items=items)
    model = SASRec(config)
    state = ckpt.model.state_dict()
    state["item_emb.weight"] = torch.from_numpy(grown)
    model.load_state_dict(state)
    ids = ckpt.vocab.ids + [f"grown-{i}" for i in range(items - known)]
    popularity = np.concatenate([ckpt.popularity,
                                 np.full(items - known, NEW_ITEM_COUNT, np.float32)])
    logger.info("grew %s from %d to %d items into %s", model_dir, known, items, out)
    return save_checkpoint(out, model.eval(), ItemVocab(ids), popularity,
                           meta={"grown_from": ckpt.model_version, "clusters": CLUSTERS,
                                 "spread": SPREAD, "seed": seed},
                           queries=ckpt.queries)


def grow_table(table: np.ndarray, items: int, seed: int = 0) -> np.ndarray:
    """[items + 1, d]: `table`'s rows, then perturbed copies around its clusters."""
    import faiss

    real = np.ascontiguousarray(table[1:], dtype=np.float32)
    dim = real.shape[1]
    kmeans = faiss.Kmeans(dim, min(CLUSTERS, len(real) // 39), niter=20, seed=seed)
    kmeans.train(real)
    _, assign = kmeans.index.search(real, 1)
    assign = assign[:, 0]
    residual = real - kmeans.centroids[assign]
    spread = np.array([residual[assign == c].std() if (assign == c).any() else 0.0
                       for c in range(len(kmeans.centroids))], dtype=np.float32)
    rng = np.random.default_rng(seed)
    new = items - len(real)
    source = rng.integers(0, len(real), new)
    noise = rng.standard_normal((new, dim)).astype(np.float32)
    copies = real[source] + noise * (SPREAD * spread[assign[source]])[:, None]
    return np.vstack([table[:1], real, copies]).astype(np.float32)
