"""A small real `Recommender` for unit tests: a seeded, untrained SASRec saved as a
checkpoint and loaded back, with the exact torch index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from streamrec.encoder.config import ContentConfig, ModelConfig
from streamrec.encoder.content import item_content
from streamrec.encoder.features import ItemFeatures
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab
from streamrec.index import build_index
from streamrec.worker.recommend import Recommender


def tiny_recommender(tmp_path: Path, vocab: ItemVocab, max_len: int = 4, hidden: int = 8,
                     blocks: int = 1, heads: int = 1, content: ContentConfig | None = None,
                     features: dict[str, ItemFeatures] | None = None) -> Recommender:
    """`content`: with an (untrained) content tower, the known items' `features` stored."""
    torch.manual_seed(0)
    model = SASRec(ModelConfig(num_items=len(vocab), max_len=max_len, hidden=hidden,
                               blocks=blocks, heads=heads, dropout=0.0,
                               emb_dropout=0.0), content).eval()
    if content is not None:
        model.set_item_content(item_content(vocab.ids, features or {}, content))
    path = save_checkpoint(tmp_path, model, vocab, np.ones(len(vocab) + 1, dtype=np.float32))
    checkpoint = load_checkpoint(path)
    table = checkpoint.model.item_embeddings().detach().numpy()
    return Recommender(checkpoint, build_index(table, backend="torch"), torch.device("cpu"))
