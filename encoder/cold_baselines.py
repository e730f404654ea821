"""The baselines a content tower must beat on items no model has seen (`cold.py`).

Four scorers over the catalogue "trained items, then cold items" (rows 1..V, V+1..V+C),
each an evaluator `Scorer`, from the weakest idea to the strongest:

- `RandomCold` (a): a random order of the cold items; every trained item last. What
  knowing only which items are new is worth.
- `CategoryPopular` (b): the items that share a category with the user's last N
  items first, then the rest, each group by popularity. Popularity is the training
  count of a trained item; a cold item has none, so it gets the mean training count of
  the trained items of its categories (the mean over its categories of "events per
  trained item in the category"): a new drama is expected to do as well as an average
  drama. Ties (common: cold items with the same categories) are broken by a fixed
  random order, not counted against the target, so the baseline is not handicapped
  by the evaluator's pessimistic ties.
- `ContentNeighbours` (c): cosine similarity between each item's content vector and
  the mean vector of the user's last N items, over every item.
- the same restricted to the cold items (d) (`cold.Restricted`), which knows which
  items are new: the strong baseline.

Content vectors (`tfidf_content`) are TF-IDF over two bags per item, its categories
and the words of its text, each bag L2-normalised and weighted, the sum normalised
again: a genre match and a title match each count, neither drowns the other. Tokens
that occur in one item only are dropped after normalising (they can never match
another item), which keeps the matrix a few thousand columns wide on MovieLens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.common.errors import ConfigError

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
# Words that match across unrelated titles; IDF alone leaves them a visible weight.
STOP_WORDS = frozenset({
    "a", "an", "and", "de", "der", "des", "die", "du", "el", "en", "et", "for", "from", "il",
    "in", "is", "it", "l", "la", "le", "les", "of", "on", "or", "the", "to", "with",
})


@dataclass(frozen=True)
class TfidfConfig:
    """How item content becomes vectors, and how much of a history the scorers read."""

    category_weight: float = 1.0  # of the L2-normalised category bag
    text_weight: float = 1.0  # of the L2-normalised bag of text words
    recent: int = 10  # the user's last N items (categories of (b), profile of (c)/(d))

    def __post_init__(self) -> None:
        if self.recent < 1 or min(self.category_weight, self.text_weight) < 0 or not (
                self.category_weight + self.text_weight > 0):
            raise ConfigError(f"content baselines need recent >= 1 and weights >= 0, not "
                              f"both 0; got {self}")


@dataclass(frozen=True)
class ItemContent:
    """Per catalogue row: its categories and its content vector (row 0: none)."""

    categories: np.ndarray  # bool [N + 1, K]
    category_names: list[str]  # K
    vectors: np.ndarray  # float32 [N + 1, T], unit rows (zero for an item without content)


def tfidf_content(
    categories: Sequence[Sequence[str]],
    texts: Sequence[str | None],
    config: TfidfConfig | None = None,
) -> ItemContent:
    """Content of catalogue rows 1..N from their categories and texts (parallel lists)."""
    config = config or TfidfConfig()
    if len(categories) != len(texts):
        raise ConfigError(f"{len(categories)} category lists but {len(texts)} texts")
    n = len(categories)
    cat_tokens = [sorted(set(c)) for c in categories]
    word_tokens = [sorted({w for w in _WORD.findall((t or "").lower()) if w not in STOP_WORDS})
                   for t in texts]
    names = sorted({c for cs in cat_tokens for c in cs})
    cat_column = {name: k for k, name in enumerate(names)}
    flags = np.zeros((n + 1, len(names)), dtype=bool)
    for row, cs in enumerate(cat_tokens, start=1):
        flags[row, [cat_column[c] for c in cs]] = True
    blocks = [_tfidf(cat_tokens, n, config.category_weight, "c:"),
              _tfidf(word_tokens, n, config.text_weight, "w:")]
    rows = np.concatenate([b[0] for b in blocks])
    tokens = [t for b in blocks for t in b[1]]
    weights = np.concatenate([b[2] for b in blocks])
    norms = np.sqrt(np.bincount(rows, weights=weights**2, minlength=n + 1))
    weights = weights / np.where(norms > 0, norms, 1.0)[rows]
    vocab, column = np.unique(np.asarray(tokens, dtype=object), return_inverse=True)
    df = np.bincount(column, minlength=len(vocab))
    shared = df[column] >= 2  # a token of one item only never matches another
    kept = np.flatnonzero(df >= 2)
    new_column = np.full(len(vocab), -1, dtype=np.int64)
    new_column[kept] = np.arange(len(kept))
    vectors = np.zeros((n + 1, len(kept)), dtype=np.float32)
    vectors[rows[shared], new_column[column[shared]]] = weights[shared]
    logger.info("item content: %d items, %d categories, %d shared tokens of %d", n,
                len(names), len(kept), len(vocab))
    return ItemContent(categories=flags, category_names=names, vectors=vectors)


def _tfidf(bags: list[list[str]], n: int, weight: float,
           prefix: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(row, token, weight) triples of one bag kind: smoothed IDF, the bag L2-normalised."""
    rows = np.repeat(np.arange(1, n + 1), [len(b) for b in bags]).astype(np.int64)
    tokens = [prefix + t for b in bags for t in b]
    if not tokens or weight == 0:
        return np.zeros(0, np.int64), [], np.zeros(0)
    _, column, df = np.unique(np.asarray(tokens, dtype=object), return_inverse=True,
                              return_counts=True)
    idf = np.log((1.0 + n) / (1.0 + df[column])) + 1.0
    norm = np.sqrt(np.bincount(rows, weights=idf**2, minlength=n + 1))
    return rows, tokens, weight * idf / norm[rows]


def _recent(histories: np.ndarray, n: int) -> np.ndarray:
    """The last `n` columns of left-padded `[B, L]` histories (padding stays 0)."""
    return histories[:, -n:]


class RandomCold:
    """(a) The cold items in a random order (fixed by `seed`), every other row -inf."""

    def __init__(self, num_warm: int, num_cold: int, seed: int = 42) -> None:
        self.num_warm, self.num_cold = num_warm, num_cold
        self._rng = np.random.default_rng(seed)

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, V + C + 1]`."""
        out = np.full((len(histories), self.num_warm + self.num_cold + 1), -np.inf, np.float32)
        out[:, self.num_warm + 1 :] = self._rng.random((len(histories), self.num_cold))
        return out


class CategoryPopular:
    """(b) Items in the categories of the user's last N items first, each group by popularity.

    `counts` are training counts per catalogue row (cold rows 0; they get their
    categories' mean, see the module docstring).
    """

    def __init__(self, content: ItemContent, counts: np.ndarray,
                 config: TfidfConfig | None = None, seed: int = 42) -> None:
        self.config = config or TfidfConfig()
        flags = content.categories.astype(np.float32)  # [N + 1, K]
        counts = np.asarray(counts, dtype=np.float64)
        trained = counts > 0
        per_category = flags[trained].sum(axis=0)  # trained items per category
        mean_count = np.divide(counts[trained] @ flags[trained], per_category,
                               out=np.zeros(flags.shape[1]), where=per_category > 0)
        n_cats = flags.sum(axis=1)
        prior = np.divide(flags @ mean_count, n_cats, out=np.zeros(len(counts)),
                          where=n_cats > 0)
        popularity = np.where(trained, counts, prior)
        tiebreak = np.random.default_rng(seed).random(len(counts))
        order = np.lexsort((tiebreak, popularity))  # ascending
        base = np.empty(len(counts), dtype=np.float32)
        base[order] = np.arange(len(counts)) / len(counts)  # a strict order in [0, 1)
        base[0] = -np.inf
        self._base = base
        self._flags = flags

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, N + 1]`: 2 + rank for in-category items, rank for the rest."""
        recent = _recent(histories, self.config.recent)
        user = self._flags[recent].max(axis=1)  # [B, K]: categories of the recent items
        in_category = (user @ self._flags.T) > 0  # [B, N + 1]
        return self._base + 2.0 * in_category.astype(np.float32)


class ContentNeighbours:
    """(c) Cosine of every item's content to the mean of the user's last N items' content.
    (d) is this scorer wrapped in `cold.Restricted` to the cold rows."""

    def __init__(self, content: ItemContent, config: TfidfConfig | None = None) -> None:
        self.config = config or TfidfConfig()
        self._vectors = content.vectors

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, N + 1]` (row 0 -inf)."""
        recent = _recent(histories, self.config.recent)
        profile = self._vectors[recent].sum(axis=1)  # [B, T]; padding rows are zero
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile /= np.where(norms > 0, norms, 1.0)
        out = profile @ self._vectors.T  # [B, N + 1]
        out[:, 0] = -np.inf
        return out
