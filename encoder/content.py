"""The content tower: an item's features as a vector in the item space, for cold start.

An item the model never saw in training has no trained ID embedding, but its
features (`features.py`: categories, text, a dense vector from the user's own model)
say what it is like. The tower maps them into the same space as the item table, so
`SASRec` can represent an item as ID embedding + content vector, and an item
without interactions by its content vector alone (the model learns to make that
useful with ID dropout, `model.py`).

Everything works offline: no downloaded tokenizer or model. Categories and text
tokens are hashed into `buckets` embedding rows (the hashing trick) with blake2b,
never Python's salted `hash()`, so a token lands in the same bucket in every process,
on every machine, in every release with the same `TOKENIZER_VERSION`. That hashing
spec (buckets, limits, salt, version) is stored with the checkpoint in `ContentConfig`.

Hashing alone gives every token a row, and about half of the title words belong to
one item only: a trained item's row of its own word is a second ID embedding (which
ID dropout does not drop), a new item's unseen words land on rows that never got a
gradient. So the tower keeps a *feature vocabulary*: the buckets of the tokens that at
least `min_items` items with training interactions share (`feature_vocabulary`,
counted by token at training). A token outside it counts for nothing, or, with
`unknown_rows`, as one trained row per field, so that how much of an item's text is
rare still says something, learnt rather than noise. The vocabulary is a buffer of the
tower, so the checkpoint stores it with the weights and every reader applies it.
What each setting does to cold items: docs/QUALITY.md, "Item cold start".

`featurize` turns features into padded tensors (`ContentInputs`); `ContentTower`
turns those into vectors. Per item: the mean of its category buckets, plus the mean
of its text buckets (one mean per field, so 40 words do not drown 2 categories),
plus a linear projection of its unit-length dense vector. Items without features get
exactly zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from streamrec.encoder.config import ContentConfig
from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.features import ItemFeatures

logger = logging.getLogger(__name__)

WORD = re.compile(r"\w+")  # Unicode letters, digits and underscores
@dataclass(frozen=True)
class ContentInputs:
    """Features of N items as tensors; the tower's input."""

    tokens: Tensor  # [N, T] int32 buckets, 0 = padding; columns :max_categories are categories
    vector: Tensor  # [N, Dv] float32, unit length where has_vector
    has_vector: Tensor  # [N] bool

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def take(self, rows: Tensor) -> ContentInputs:
        """The inputs of `rows` [n] -> a ContentInputs of n items."""
        return ContentInputs(self.tokens[rows], self.vector[rows], self.has_vector[rows])

    def to(self, device: torch.device | str) -> ContentInputs:
        """The same inputs on `device` (the model's, for `SASRec.content_vectors`)."""
        return ContentInputs(self.tokens.to(device), self.vector.to(device),
                             self.has_vector.to(device))

    def present(self) -> Tensor:
        """[N] bool: the items that have any feature the tower reads."""
        return (self.tokens > 0).any(dim=1) | self.has_vector


def text_tokens(text: str, config: ContentConfig) -> list[str]:
    """Field-prefixed tokens of a text: "t:word" and "b:word word", distinct, in text order,
    at most `max_words`. NFKC and lower case, so "Ｒｅｄ" and "red" are one token."""
    words = WORD.findall(unicodedata.normalize("NFKC", text).lower())
    out: dict[str, None] = {}
    for i, word in enumerate(words):
        out["t:" + word] = None
        if config.bigrams and i:
            out[f"b:{words[i - 1]} {word}"] = None
        if len(out) >= config.max_words:
            break
    return list(out)[: config.max_words]


def category_tokens(categories: Iterable[str], config: ContentConfig) -> list[str]:
    """"c:category" tokens (exact spelling), distinct, the first `max_categories`."""
    return list(dict.fromkeys("c:" + c for c in categories))[: config.max_categories]


def token_bucket(token: str, config: ContentConfig) -> int:
    """The bucket row of a token, in 1..buckets-1: the same in every process."""
    digest = hashlib.blake2b(f"{config.salt}\x00{token}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (config.buckets - 1) + 1


def featurize(features: Sequence[ItemFeatures | None], config: ContentConfig) -> ContentInputs:
    """Features of N items (None = none) -> the tower's padded inputs, on the CPU.

    A vector whose length is not `config.vector_dim` is left out (logged): the tower
    has one projection for one dimension. Vectors are scaled to unit length, so the
    scale of the user's model does not matter.
    """
    n, cats = len(features), config.max_categories
    tokens = np.zeros((n, config.max_tokens), dtype=np.int32)
    vector = np.zeros((n, config.vector_dim), dtype=np.float32)
    has_vector = np.zeros(n, dtype=bool)
    known: dict[str, int] = {}  # words repeat across items: hash each once

    def bucket(token: str) -> int:
        found = known.get(token)
        if found is None:
            found = known[token] = token_bucket(token, config)
        return found

    wrong_dim = 0
    for i, item in enumerate(features):
        if item is None:
            continue
        for slot, token in enumerate(category_tokens(item.categories, config)):
            tokens[i, slot] = bucket(token)
        for slot, token in enumerate(text_tokens(item.text or "", config), start=cats):
            tokens[i, slot] = bucket(token)
        if item.vector is not None and config.vector_dim:
            if item.vector.shape != (config.vector_dim,):
                wrong_dim += 1
                continue
            norm = float(np.linalg.norm(item.vector))
            vector[i] = item.vector / norm if norm > 0 else item.vector
            has_vector[i] = True
    if wrong_dim:
        logger.warning("%d of %d items have a feature vector of another length than %d; "
                       "their vectors are left out", wrong_dim, n, config.vector_dim)
    return ContentInputs(torch.from_numpy(tokens), torch.from_numpy(vector),
                         torch.from_numpy(has_vector))


def vector_dim_of(features: Iterable[ItemFeatures]) -> int:
    """The one dimension of the items' dense vectors (0 when none has one); a
    DataFormatError when they disagree, since one tower projects one dimension."""
    dims: dict[int, int] = {}
    for item in features:
        if item.vector is not None:
            dims[len(item.vector)] = dims.get(len(item.vector), 0) + 1
    if len(dims) > 1:
        raise DataFormatError(f"item feature vectors have different lengths ({dims} items "
                              "per length); give every item a vector of one length, or none")
    return next(iter(dims), 0)


def content_config_for(features: Iterable[ItemFeatures],
                       base: ContentConfig | None = None) -> ContentConfig:
    """`base` (default: the defaults) with the vector dimension of `features`."""
    return dataclasses.replace(base or ContentConfig(), vector_dim=vector_dim_of(features))


def item_content(ids: Sequence[str], features: Mapping[str, ItemFeatures],
                 config: ContentConfig) -> ContentInputs:
    """Inputs of the items `ids` (a vocabulary's rows 1..V, in order) from their features;
    an item the mapping lacks gets none and is represented by its ID embedding alone."""
    inputs = featurize([features.get(i) for i in ids], config)
    covered = int(inputs.present().sum())
    logger.info("content tower: %d of %d items have features (%d feature records name "
                "items the interactions do not)", covered, len(ids),
                len(features) - sum(i in features for i in ids))
    if features and not covered:
        logger.warning("no item of the interactions has features: do the feature file's "
                       "item ids spell the items as the interactions do?")
    return inputs


def feature_vocabulary(features: Iterable[ItemFeatures | None],
                       config: ContentConfig) -> Tensor:
    """The buckets [buckets] bool of the tokens that at least `min_items` of the items
    `features` (the trained ones) have; every bucket when min_items is 0.

    Tokens are counted, not buckets: two words of one item each that share a bucket
    are still unknown. A word outside the vocabulary whose bucket a kept token also
    landed in is read, which hashing cannot avoid (about kept tokens / buckets of them).
    """
    known = torch.zeros(config.buckets, dtype=torch.bool)
    if not config.min_items:
        known[1:] = True
        return known
    counts: Counter[str] = Counter()
    for item in features:
        if item is not None:
            counts.update(category_tokens(item.categories, config))
            counts.update(text_tokens(item.text or "", config))
    kept = [token_bucket(token, config) for token, n in counts.items()
            if n >= config.min_items]
    known[kept] = True
    logger.info("feature vocabulary: %d of %d tokens are shared by >= %d trained items",
                len(kept), len(counts), config.min_items)
    return known


class ContentTower(nn.Module):
    """ContentInputs of N items -> content vectors [N, d]; zero for an item without features."""

    known: Tensor  # [buckets] bool: the feature vocabulary, the buckets that count

    def __init__(self, config: ContentConfig, hidden: int, init_std: float) -> None:
        super().__init__()
        self.config = config
        self.buckets = nn.EmbeddingBag(config.buckets, hidden, mode="sum", padding_idx=0)
        self.vector = nn.Linear(config.vector_dim, hidden) if config.vector_dim else None
        # Every bucket counts until `set_vocabulary`; a tower without a vocabulary
        # (min_items 0, as towers saved before it) neither stores nor expects one.
        self.register_buffer("known", torch.ones(config.buckets, dtype=torch.bool),
                             persistent=config.min_items > 0)
        self.unknown = (nn.Parameter(torch.zeros(2, hidden))
                        if config.min_items and config.unknown_rows else None)
        self.reset_parameters(init_std)

    def reset_parameters(self, std: float) -> None:
        """N(0, std) like the item table, so content and ID parts start on one scale."""
        nn.init.normal_(self.buckets.weight, std=std)
        with torch.no_grad():
            self.buckets.weight[0].zero_()
        if self.vector is not None:
            nn.init.normal_(self.vector.weight, std=std)
            nn.init.zeros_(self.vector.bias)
        if self.unknown is not None:
            nn.init.normal_(self.unknown, std=std)

    @torch.no_grad()
    def set_vocabulary(self, known: Tensor, extend: bool = False) -> int:
        """Read only the buckets `known` [buckets] bool (`feature_vocabulary`); with
        `extend`, those besides the ones kept already (a warm start). Returns how many
        buckets count now. A tower without a vocabulary (min_items 0) keeps them all."""
        if self.config.min_items:
            known = known.to(self.known.device)
            self.known.copy_(known | self.known if extend else known)
            self.known[0] = False
        return int(self.known[1:].sum())

    def readable(self, tokens: Tensor) -> Tensor:
        """tokens [N, T] with every bucket outside the vocabulary turned into padding."""
        return tokens * self.known[tokens.long()]

    def reads(self, inputs: ContentInputs) -> Tensor:
        """[N] bool: the items the tower gives a vector (a known token, or any token with
        unknown rows, or a dense vector)."""
        tokens = inputs.tokens if self.unknown is not None else self.readable(inputs.tokens)
        return (tokens > 0).any(dim=1) | inputs.has_vector

    def forward(self, inputs: ContentInputs) -> Tensor:
        """tokens [N, T], vector [N, Dv], has_vector [N] -> [N, d]."""
        split = self.config.max_categories
        slots = inputs.tokens > 0  # [N, T] every token the item has
        tokens = self.readable(inputs.tokens)  # [N, T]
        if self.training and self.config.token_dropout:
            keep = torch.rand(tokens.shape, device=tokens.device) >= self.config.token_dropout
            tokens, slots = tokens * keep, slots & keep
        known = tokens > 0  # [N, T]
        counted = (slots if self.unknown is not None else known).float()
        # Weight 1 / (tokens of its field): one bag call sums the mean of each field (a
        # field an item lacks adds 0). One call, not one per field: each call's backward
        # fills a dense gradient of the whole bucket table.
        per_field = torch.stack([counted[:, :split].sum(1), counted[:, split:].sum(1)], 1)
        count = torch.cat([per_field[:, :1].expand(-1, split),
                           per_field[:, 1:].expand(-1, counted.shape[1] - split)], dim=1)
        weights = known.float() / count.clamp(min=1.0)  # [N, T]
        out = self.buckets(tokens, per_sample_weights=weights)  # [N, d]
        if self.unknown is not None:
            unknown = (slots & ~known).float()  # [N, T]
            share = torch.stack([unknown[:, :split].sum(1), unknown[:, split:].sum(1)], 1)
            out = out + (share / per_field.clamp(min=1.0)) @ self.unknown  # [N, 2] @ [2, d]
        if self.vector is not None:
            projected = self.vector(inputs.vector.to(out.dtype))  # [N, d]
            out = out + projected * inputs.has_vector[:, None]
        return out
