"""Histories in, top-k items out: the encoder stage and the index stage.

`Recommender` owns the loaded checkpoint and the item index built from its tied
item table. For a batch of histories it encodes the non-empty ones into query
vectors (with the last position's attention over the history) and searches the
index for the top k items outside each user's history.
Users with no usable history get the most popular training items instead. The two
stages are separate methods so each can be timed and benchmarked alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamrec.common.devices import from_numpy, resolve_device, to_numpy
from streamrec.encoder.checkpoint import Checkpoint, load_checkpoint
from streamrec.encoder.compiled import trace_encoder
from streamrec.encoder.content import featurize
from streamrec.encoder.features import ItemFeatures
from streamrec.encoder.vocab import ItemVocab
from streamrec.index import ItemIndex, build_index
from streamrec.index.errors import IndexRecallError
from streamrec.index.extra import ExtraItems, merge_results, reserve
from streamrec.index.params import TUNED_RECALL, AnnParams
from streamrec.index.recall import Recall, measure
from streamrec.worker.state.partition import close_up

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """Encoder output for a batch: queries for rows with history, attention per row."""

    queries: np.ndarray  # [B, d] float32 (rows without history are zeros)
    attention: np.ndarray  # [B, L] float32, 0 on padding
    has_history: np.ndarray  # [B] bool


@dataclass(frozen=True)
class Recommendations:
    """Top-k rows and scores per user, and whether each came from the popular fallback."""

    rows: np.ndarray  # [B, k] int64, -1 where the catalogue ran out
    scores: np.ndarray  # [B, k] float32
    popular: np.ndarray  # [B] bool
    attention: np.ndarray  # [B, L] float32

    def select(self, users: np.ndarray | slice) -> Recommendations:
        """These users' rows only (`users`: a bool mask or a slice of the batch)."""
        return Recommendations(rows=self.rows[users], scores=self.scores[users],
                               popular=self.popular[users], attention=self.attention[users])


# A length bucket smaller than this joins the next longer one. Measured (2026-12-07,
# AMD EPYC, 1 thread, the games model, 300 batches of histories as long as the games
# log's events have): at 8 a batch of 24 users encoded in 1.50-1.77 ms against
# 2.06-2.52 at 32, 32 users in 1.69-2.15 against 2.73-2.98 (most of a half-load
# worker's batches: at 32, a batch under 64 users was one call padded to its longest
# history, usually 48 or 50 wide where half the histories have 5 items); the same
# within noise at 2-8 and 1,024 users.
BUCKET_MIN_ROWS = 8
RECALL_QUERIES = 1000  # query vectors on which a loaded approximate index is measured


def ladder_size(n: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k and 3 * 2^(k-1)) that is at
    least `n`: under 1.5 times `n`.

    The encoder is called with batches padded to these sizes (rows and history
    width) because every new tensor shape costs memory that is never given back:
    glibc keeps the freed blocks of each size, oneDNN and TorchScript cache a kernel
    per shape. Measured on the games model, 600 distinct batch sizes grew a process
    by 2.5 GB; a worker meets every size from 1 to --max-batch and every width from
    1 to max_len, so its memory grew for minutes (bench soak). On the ladder a worker
    meets at most about 20 x 10 shapes.
    """
    if n <= 2:
        return max(n, 1)
    power = 1 << (n - 1).bit_length()  # the smallest power of two >= n
    three = 3 * power // 4
    return three if three >= n else power


def length_buckets(lengths: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """(rows, longest length) groups of the non-empty `lengths` [B] for the encoder.

    Lengths up to 8, 16, 32, ... share a bucket; a bucket of fewer than
    `BUCKET_MIN_ROWS` rows joins the next longer one (one more encoder call costs
    more than the padding it saves), so a batch of a few users is one call.
    """
    buckets: list[tuple[np.ndarray, int]] = []
    pending = np.zeros(0, dtype=np.int64)
    has = np.flatnonzero(lengths > 0)
    if not len(has):
        return buckets
    edges = [8]
    while edges[-1] < lengths.max():
        edges.append(2 * edges[-1])
    bucket_of = np.searchsorted(edges, lengths[has])  # first edge >= length
    for b in range(len(edges)):
        pending = np.concatenate([pending, has[bucket_of == b]])
        if len(pending) >= BUCKET_MIN_ROWS or b == len(edges) - 1:
            if len(pending):
                buckets.append((pending, int(lengths[pending].max())))
            pending = pending[:0]
    return buckets


def set_faiss_threads(threads: int, *, own: bool = False) -> None:
    """FAISS's OpenMP threads on every thread that searches, when faiss is installed;
    with `own`, the calling thread's own count instead (0: every core): the model
    stage's, whatever the others were given."""
    try:
        from streamrec.index import faiss_threads
    except ImportError:  # no faiss
        return
    if own:
        faiss_threads.for_this_thread(threads)
    else:
        faiss_threads.set_threads(threads)


class Recommender:
    """The model stage of the worker: encode + search with exclusions + cold start."""

    def __init__(self, checkpoint: Checkpoint, index: ItemIndex, device: torch.device,
                 index_recall: float | None = None) -> None:
        self.checkpoint = checkpoint
        self.index = index
        self.index_recall = index_recall  # recall@10 against exact; None: exact index
        self.recall: Recall | None = None  # how index_recall was measured, when it was
        self.device = device
        self.max_len = checkpoint.config.max_len
        # Items unknown to the model, embedded by its content tower (worker/live_items.py)
        self.extra = ExtraItems(index.dim)
        # Cold-start scores are each item's share of training interactions.
        counts = np.asarray(checkpoint.popularity, dtype=np.float64)
        popularity = counts / max(counts[1:].sum(), 1.0)
        popularity[0] = -np.inf
        self._popular_order = np.argsort(-popularity, kind="stable")  # best first
        self._popular_scores = popularity[self._popular_order]
        # One TorchScript graph per batch instead of ~60 GIL round trips (encoder/compiled.py).
        self._encode, self.traced = trace_encoder(checkpoint.model, device)

    @classmethod
    def load(cls, model_dir: Path, device: str = "auto", backend: str = "auto",
             threads: int = 0, ann: AnnParams | None = None,
             min_recall: float | None = 0.0,
             vocab_base: ItemVocab | None = None) -> Recommender:
        """Load a checkpoint directory and index its item table.

        `backend` is the index's (auto, torch, faiss, or an approximate kind, with
        `ann`'s parameters; one stored in the checkpoint is read instead of built when
        it fits). An approximate index's recall@10 against exact search is measured
        on the checkpoint's query sample and one below `min_recall` is refused
        (IndexRecallError); None leaves the measuring to the caller. `threads` > 0 sets
        torch's CPU threads for the process and FAISS's for every thread that searches
        but the model stage's, which has its own (`index/faiss_threads.py`): the Kafka
        client and the broker need cores too. `vocab_base`: the serving model's
        vocabulary, which a hot-swapped version's may extend (`load_checkpoint`).
        """
        if threads > 0:  # before the index is built: IVF's k-means runs on FAISS's threads
            torch.set_num_threads(threads)
            set_faiss_threads(threads)
        dev = resolve_device(device)
        checkpoint = load_checkpoint(model_dir, device=str(dev), vocab_base=vocab_base)
        with torch.inference_mode():
            table = checkpoint.model.item_embeddings().float().cpu().numpy()
        index = build_index(table, backend=backend,  # type: ignore[arg-type]
                            device="cuda" if dev.type == "cuda" else "cpu", params=ann,
                            stored=checkpoint.path)
        logger.info(
            "loaded model %s: %d items, max history %d, device %s, index %s",
            checkpoint.model_version, len(checkpoint.vocab), checkpoint.config.max_len,
            dev, index.name,
        )
        recommender = cls(checkpoint, index, dev)
        logger.info("encoder: %s", "traced (TorchScript)" if recommender.traced else "eager")
        if index.approximate and min_recall is not None:
            recommender.measure_recall(table, min_recall)
        return recommender

    def measure_recall(self, table: np.ndarray, min_recall: float,
                       every_query: bool = False) -> float:
        """recall@10 of the index against exact search (kept in `index_recall` and
        `recall`); IndexRecallError below `min_recall`. An index that may choose its
        breadth (IVF, `--nprobe 0`) first widens its search until it reaches
        TUNED_RECALL or `min_recall`, the higher (index/recall.py).

        The queries are the checkpoint's sample (validation histories encoded at
        training); a checkpoint without one is measured on this encoder's queries for
        one-item histories of the most popular items, and says so. The exact answer is
        the one stored with the index when it answers these queries, else computed now
        (on a sample that shrinks with the catalogue, unless `every_query`).
        """
        queries = self.checkpoint.queries
        source = "validation histories stored with the checkpoint"
        if queries is None or not len(queries):
            popular = self._popular_order[:RECALL_QUERIES]
            popular = popular[np.isfinite(self._popular_scores[:len(popular)])]
            queries = self.encode(popular[:, None], np.ones(len(popular), np.int64)).queries
            source = "one-item histories of the most popular items (no stored sample)"
        measured = measure(self.index, table, queries[:RECALL_QUERIES], k=10,
                           every_query=every_query, target=max(TUNED_RECALL, min_recall))
        recall, used = measured.value, measured.queries
        self.recall, self.index_recall = measured, recall
        widened = (f"; its search widened {measured.widened} time(s), to "
                   f"{self.index.describe()}" if measured.widened else "")
        logger.info("index %s: recall@10 %.4f against exact search on %d queries (%s; exact "
                    "top 10 %s)%s", self.index.name, recall, used, source,
                    "stored with the index" if measured.stored else "computed now", widened)
        if recall < min_recall:
            raise IndexRecallError(
                f"{self.checkpoint.path}: the {self.index.name} index finds {recall:.3f} of "
                f"the exact top 10 (on {used} queries, {source}), below --min-recall "
                f"{min_recall}; search more lists (--nprobe, --ef-search) or use an exact "
                "--index")
        return recall

    def known(self, histories: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The histories as this model can read them: rows beyond its vocabulary (items
        the worker keeps but the model does not know, `state/items.py`) removed and the
        rest closed up to the right, so the model sees its known items in order, as in
        training. Returns the inputs themselves when every row is known (the usual case).
        """
        unknown = histories > len(self.checkpoint.vocab)
        if not unknown.any():
            return histories, lengths
        (items,) = close_up(np.where(unknown, 0, histories))
        return items, (items > 0).sum(axis=1)

    @property
    def model_version(self) -> str:
        """The loaded checkpoint's version string."""
        return self.checkpoint.model_version

    def encode(self, histories: np.ndarray, lengths: np.ndarray) -> Encoded:
        """Query vectors for `histories` [B, L] (left-padded); empty rows are skipped.

        Rows go to the encoder in buckets of similar length (`length_buckets`), each
        trimmed to its own longest history: most histories are short, and one long
        one would otherwise pad every row of the batch to L. Left padding never
        changes a row's output (positions count from the newest item), so the
        buckets give the same vectors as one call. Each call's rows and width are
        padded up to `ladder_size` (extra rows repeat the first one; their output is
        dropped), which bounds the shapes the encoder ever sees.
        """
        batch, width = histories.shape
        queries = np.zeros((batch, self.index.dim), dtype=np.float32)
        attention = np.zeros((batch, width), dtype=np.float32)
        lengths = np.minimum(lengths, min(self.max_len, width))
        for rows, longest in length_buckets(lengths):
            cols = min(ladder_size(longest), self.max_len, width)
            block = histories[rows, width - cols:]
            extra = ladder_size(len(rows)) - len(rows)
            if extra:
                block = np.concatenate([block, np.repeat(block[:1], extra, axis=0)])
            with torch.inference_mode():
                query, attn = self._encode(from_numpy(block, self.device))
            queries[rows] = to_numpy(query)[: len(rows)]
            attention[rows, width - cols:] = to_numpy(attn)[: len(rows)]
        return Encoded(queries=queries, attention=attention, has_history=lengths > 0)

    def content_vectors(self, features: Sequence[ItemFeatures]) -> np.ndarray | None:
        """[n, d] vectors for items the model never saw, from their features through its
        content tower (what `extra` serves them by); None when the model has no tower."""
        model, config = self.checkpoint.model, self.checkpoint.content
        if model.content is None or config is None:
            return None
        inputs = featurize(features, config).to(self.device)
        with torch.inference_mode():
            return model.content_vectors(inputs).float().cpu().numpy()

    def set_unavailable(self, unavailable: np.ndarray) -> None:
        """Rows never recommended from the next batch on (items retired from the
        catalogue; a bool mask [V + 1]): masked in the index search of every query and
        skipped by the popular fallback. Only while no batch is in the model stage."""
        self.index.set_unavailable(unavailable)

    def popular(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` most popular available rows and their scores, best first: the first
        k + u of the popularity order, u unavailable rows, hold them."""
        gone = self.index.unavailable
        if not len(gone.rows):
            return self._popular_order[:k], self._popular_scores[:k]
        head = self._popular_order[: k + len(gone.rows)]
        keep = np.flatnonzero(~gone.mask[head] & (head > 0))[:k]
        return head[keep], self._popular_scores[keep]

    def search(self, encoded: Encoded, histories: np.ndarray, k: int,
               full_histories: np.ndarray | None = None, fresh_slots: int = 0,
               ) -> Recommendations:
        """Top-k per user without their history items nor unavailable ones, the items
        embedded live (`extra`) competing by score; popular items for empty histories.

        `histories` are the rows the model read (`known`); `full_histories`, the same
        before unknown rows were removed, exclude the live items a user has seen.
        `fresh_slots` of the k places go to the best live items when they did not
        make it on score (`index.extra.reserve`)."""
        batch = histories.shape[0]
        rows = np.full((batch, k), -1, dtype=np.int64)
        scores = np.full((batch, k), -np.inf, dtype=np.float32)
        has = encoded.has_history
        if has.any():
            found = self.index.search(encoded.queries[has], k, histories[has])
            if len(self.extra):
                seen = histories if full_histories is None else full_histories
                fresh = self.extra.search(encoded.queries[has], k, seen[has])
                found = reserve(merge_results(found, fresh, k), fresh, k, fresh_slots)
            rows[has], scores[has] = found.rows, found.scores
        if (~has).any():
            top, top_scores = self.popular(k)
            rows[~has, : len(top)] = top
            scores[~has, : len(top)] = top_scores
        return Recommendations(rows=rows, scores=scores, popular=~has,
                               attention=encoded.attention)
