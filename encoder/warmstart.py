"""Warm starts: retrain from the current model's weights instead of from scratch.

A retrain on fresh events mostly sees the items the current model already knows,
plus a few new ones. Starting from the trained weights and training a few epochs
reaches the quality of a full run in a fraction of its time (docs/QUALITY.md,
"Warm-started retrain vs full retrain"). Three steps:

1. `grow_interactions`: the new data re-indexed on a grown vocabulary. The old
   vocabulary keeps rows 1..V_old, so the old item table lines up row by row; items
   only the new data has are appended after them. Old items absent from the new
   data stay (they keep their rows and can still be recommended).
2. `warm_model_config`: the old model's config with the grown item count; settings
   that would change the shape of a weight (max_len, hidden, blocks, heads,
   ffn_mult) are refused, dropout may be changed.
3. `warm_start`: the grown model. Every weight is copied; each new item's row is
   the PPMI-weighted average of the trained rows of the items it co-occurs with in
   the new training sequences (`cooccurrence.ppmi_matrix`), then rescaled to the
   old rows' typical norm. Not the SVD table a fresh run starts from: the SVD basis
   of a fresh factorisation is unrelated to the trained model's embedding space, so
   its rows would land at arbitrary places among the trained ones, while an average
   of trained neighbours lands where the model already keeps those neighbours.
   A content tower's weights and feature vocabulary are copied too; its stored
   inputs grow with the vocabulary (`grown_content`): the new file's features where
   it has an item, the stored ones for old items it does not name; its feature
   vocabulary gains the tokens the new file's trained items share.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streamrec.common.errors import ConfigError
from streamrec.encoder.checkpoint import Checkpoint
from streamrec.encoder.config import TRAINING_ONLY, ContentConfig, ModelConfig
from streamrec.encoder.content import (
    ContentInputs,
    feature_vocabulary,
    featurize,
    vector_dim_of,
)
from streamrec.encoder.cooccurrence import ppmi_matrix
from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import TrainingError
from streamrec.encoder.features import ItemFeatures
from streamrec.encoder.model import SASRec
from streamrec.encoder.split import leave_one_out
from streamrec.encoder.vocab import ItemVocab

logger = logging.getLogger(__name__)

# Fields of ModelConfig that shape a weight: a warm start cannot change them.
ARCHITECTURE = ("max_len", "hidden", "blocks", "heads", "ffn_mult")


@dataclass(frozen=True)
class WarmStart:
    """The grown model to train from, and how its item table was grown."""

    model: SASRec  # the old weights, item table grown to the new vocabulary (CPU, eval)
    from_version: str  # model_version of the checkpoint it grew from
    old_items: int  # V_old: rows 1..V_old are the old model's rows, unchanged
    new_items: int  # rows appended after them
    from_old_neighbours: int  # new rows averaged from trained rows of old items
    from_new_neighbours: int  # new rows averaged from the first pass's new rows
    random: int  # new items that co-occur with nothing: small random rows

    def meta(self) -> dict[str, Any]:
        """JSON-able summary for the checkpoint's meta and the CLI summary."""
        return {"from_model_version": self.from_version, "old_items": self.old_items,
                "new_items": self.new_items, "from_old_neighbours": self.from_old_neighbours,
                "from_new_neighbours": self.from_new_neighbours, "random": self.random}


def grow_interactions(old_vocab: ItemVocab, data: Interactions) -> Interactions:
    """`data` re-indexed on `old_vocab` grown by the items only `data` has.

    Old ids keep rows 1..V_old; new ids follow in `ItemVocab.build` order (numeric
    when all ids are integers, else first appearance). The load report is unchanged:
    the interactions, users and distinct items read are the same, only their rows move.
    """
    new_ids = [x for x in data.vocab.ids if x not in old_vocab]
    grown = ItemVocab([*old_vocab.ids, *ItemVocab.build(new_ids).ids])
    remap = np.zeros(data.num_items + 1, dtype=np.int64)  # data row -> grown row
    remap[1:] = grown.rows(data.vocab.ids)
    lengths = [len(s) for s in data.sequences]
    flat = remap[np.concatenate(data.sequences)] if data.sequences else np.zeros(0, np.int64)
    sequences = np.split(flat, np.cumsum(lengths)[:-1]) if lengths else []
    out = dataclasses.replace(data, sequences=sequences, vocab=grown)
    logger.info("warm start vocabulary: %d old items + %d new = %d (%d old items absent "
                "from the new data)", len(old_vocab), len(new_ids), len(grown),
                int((out.item_counts()[1 : len(old_vocab) + 1] == 0).sum()))
    return out


def warm_model_config(old: ModelConfig, num_items: int,
                      overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """`old` with `num_items` and the dropout `overrides`; ConfigError for an override
    that contradicts the old architecture (None values are "not given")."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    clashes = [f"{k}={given[k]} (the model has {getattr(old, k)})" for k in ARCHITECTURE
               if k in given and given[k] != getattr(old, k)]
    if clashes:
        raise ConfigError(f"a warm start keeps the architecture of the model it starts from; "
                          f"{', '.join(clashes)}: drop those settings, or train from scratch "
                          "without --warm-start")
    if num_items < old.num_items:
        raise TrainingError(f"the grown vocabulary ({num_items} items) is smaller than the "
                            f"old one ({old.num_items}); grow it with grow_interactions")
    keep = {k: given[k] for k in ("dropout", "emb_dropout") if k in given}
    return dataclasses.replace(old, num_items=num_items, **keep)


def warm_start(previous: Checkpoint, data: Interactions, config: ModelConfig, *,
               window: int = 20, seed: int = 0, fit_validation: bool = False,
               item_features: Mapping[str, ItemFeatures] | None = None,
               content_overrides: Mapping[str, Any] | None = None) -> WarmStart:
    """The model to train `data` from: `previous`'s weights with the item table grown.

    `data` must be on the grown vocabulary (`grow_interactions`) and `config` the
    grown config (`warm_model_config`). New rows come from co-occurrences within
    `window` positions in the part of `data` the run trains on: its training part, with
    each user's validation item when `fit_validation` (`TrainConfig.fit_validation`),
    never the test items. A retrain's typical new item is some user's newest event but
    one: read without the validation items, it would start at random.
    A content tower is kept, its inputs grown with `item_features` (`grown_content`);
    `content_overrides` (ContentConfig fields) may change its training-only settings
    (`TRAINING_ONLY`), nothing else. Its feature vocabulary keeps every token it had and
    gains those that `min_items` of the items the new features name and the grown data
    trains on share.
    """
    old = previous.model
    v_old = old.config.num_items
    if data.vocab.ids[:v_old] != previous.vocab.ids:
        raise TrainingError("the data's vocabulary does not start with the old model's; "
                            "re-index it with grow_interactions(checkpoint.vocab, data)")
    dropouts = {"dropout": old.config.dropout, "emb_dropout": old.config.emb_dropout}
    if dataclasses.replace(config, **dropouts) != dataclasses.replace(
            old.config, num_items=data.num_items):
        raise TrainingError(f"{config} is not a warm start of {old.config}; build it with "
                            "warm_model_config")
    content = _warm_content(old.content_config, item_features, content_overrides)
    fitted = leave_one_out(data)
    fitted = fitted.with_validation_trained() if fit_validation else fitted
    table, counts = grown_item_table(old.item_emb.weight.detach().cpu(), fitted.train,
                                     data.num_items, window, seed)
    state = {k: v.detach().cpu() for k, v in old.state_dict().items()}
    state["item_emb.weight"] = table
    if content is not None:
        grown = grown_content(old.stored_content().to("cpu"), data.vocab.ids, item_features,
                              content)
        state.update(content_tokens=grown.tokens, content_vector=grown.vector,
                     content_has_vector=grown.has_vector)
    model = SASRec(config, content)
    model.load_state_dict(state)  # any other shape mismatch is a bug: let it raise
    if model.content is not None and content is not None and item_features:
        rows = np.unique(np.concatenate(fitted.train))
        trained = [item_features.get(data.vocab.ids[r - 1]) for r in rows[rows > 0].tolist()]
        model.content.set_vocabulary(feature_vocabulary(trained, content), extend=True)
    start = WarmStart(model=model.eval(), from_version=previous.model_version, old_items=v_old,
                      new_items=data.num_items - v_old, from_old_neighbours=counts[0],
                      from_new_neighbours=counts[1], random=counts[2])
    logger.info("warm start from %s: %d new items (%d from old neighbours, %d from new ones, "
                "%d random)", start.from_version, start.new_items, *counts)
    return start


def _warm_content(old: ContentConfig | None, features: Mapping[str, ItemFeatures] | None,
                  overrides: Mapping[str, Any] | None) -> ContentConfig | None:
    """The grown model's tower config: the old one, its training-only settings changed if
    given; other `overrides` (None values are "not given") must agree with the old tower."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if old is None:
        if features is not None or given:
            raise ConfigError("the model to warm-start from has no content tower, and a warm "
                              "start keeps the architecture: train from scratch with "
                              "--item-features, or drop the item features")
        return None
    clashes = [f"{k}={v} (the tower has {getattr(old, k)})" for k, v in given.items()
               if k not in TRAINING_ONLY and v != getattr(old, k)]
    if clashes:
        raise ConfigError(f"a warm start keeps the content tower's shape; {', '.join(clashes)}"
                          ": drop those settings, or train from scratch")
    dim = vector_dim_of(features.values()) if features is not None else 0
    if dim not in (0, old.vector_dim):
        raise ConfigError(f"the item features' vectors have {dim} dimensions, the model's "
                          f"tower projects {old.vector_dim}: give vectors of the old model's "
                          "dimension, or train from scratch")
    return dataclasses.replace(old, **{k: v for k, v in given.items() if k in TRAINING_ONLY})


def grown_content(stored: ContentInputs, ids: Sequence[str],
                  features: Mapping[str, ItemFeatures] | None,
                  config: ContentConfig) -> ContentInputs:
    """Tower inputs of rows 0..V of the grown vocabulary `ids` from the old model's
    `stored` inputs (rows 0..V_old) and the new `features`: an item the new file names
    gets its new features (the file is the current catalogue), an old item it does not
    name keeps its stored ones, and a new item it does not name gets none."""
    size, v_old = len(ids) + 1, len(stored) - 1
    grown = ContentInputs(torch.zeros(size, config.max_tokens, dtype=stored.tokens.dtype),
                          torch.zeros(size, config.vector_dim),
                          torch.zeros(size, dtype=torch.bool))
    grown.tokens[: v_old + 1] = stored.tokens
    grown.vector[: v_old + 1] = stored.vector
    grown.has_vector[: v_old + 1] = stored.has_vector
    named = [row for row, item in enumerate(ids, start=1) if features and item in features]
    if features and named:
        fresh = featurize([features[ids[row - 1]] for row in named], config)
        at = torch.as_tensor(named)
        grown.tokens[at], grown.vector[at], grown.has_vector[at] = (
            fresh.tokens, fresh.vector, fresh.has_vector)
    if features is None and size > v_old + 1:
        logger.warning("warm start without item features: the %d new items have none, the "
                       "tower knows only the old model's items", size - v_old - 1)
    return grown


def grown_item_table(old_table: Tensor, train: Sequence[np.ndarray], num_items: int,
                     window: int, seed: int = 0) -> tuple[Tensor, tuple[int, int, int]]:
    """old_table `[V_old + 1, d]` -> (table `[V + 1, d]`, (first pass, second pass, random)),
    V = `num_items`, the neighbours read from the `train` sequences (rows of the grown
    vocabulary).

    Rows 0..V_old are copied. A new item's row is the PPMI-weighted mean of the rows
    of the old items it co-occurs with; a second pass places new items that co-occur
    only with new items from the first pass's rows. Averages are shorter than the rows
    they average, so each is rescaled to the median norm of the old rows. Items with
    no co-occurrence at all get N(0, std of the old rows) entries.
    """
    v_old, dim = old_table.shape[0] - 1, old_table.shape[1]
    size = num_items + 1
    table = torch.zeros(size, dim)
    table[: v_old + 1] = old_table
    known = torch.zeros(size, dtype=torch.bool)
    known[1 : v_old + 1] = True
    targets = ~known
    targets[0] = False
    if size == v_old + 1:
        return table, (0, 0, 0)
    ppmi = ppmi_matrix(list(train), num_items, window)
    norm = old_table[1:].norm(dim=1)
    typical = norm[norm > 0].median() if bool((norm > 0).any()) else torch.tensor(1.0)
    placed = []
    for _ in range(2):  # from old neighbours, then from new ones placed by the first pass
        rows, found = _ppmi_mean(ppmi, table, known, targets)
        table[found] = rows * (typical / rows.norm(dim=1, keepdim=True).clamp_min(1e-12))
        known |= found
        targets &= ~found
        placed.append(int(found.sum()))
    generator = torch.Generator().manual_seed(seed)
    std = float(old_table[1:].std()) if v_old > 1 else 0.02
    table[targets] = torch.randn(int(targets.sum()), dim, generator=generator) * std
    return table, (placed[0], placed[1], int(targets.sum()))


def _ppmi_mean(ppmi: Tensor, table: Tensor, known: Tensor, targets: Tensor
               ) -> tuple[Tensor, Tensor]:
    """PPMI-weighted mean of the `known` rows each `targets` row co-occurs with
    -> (means [n, d], found [V + 1] bool marking the n rows that had a known neighbour)."""
    i, j = ppmi.indices()
    w = ppmi.values()
    keep = targets[i] & known[j]
    i, j, w = i[keep], j[keep], w[keep]
    total = torch.zeros(table.shape[0]).index_add_(0, i, w)  # [V + 1]
    summed = torch.zeros_like(table).index_add_(0, i, w[:, None] * table[j])  # [V + 1, d]
    found = total > 0
    return summed[found] / total[found, None], found
