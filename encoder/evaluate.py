"""Ranking metrics for any scorer: full ranking, and the sampled-100 protocol.

Anything that maps a batch of histories to a score per item (the trained model
through `ModelScorer`, the baselines in `baselines.py`) is a `Scorer`, and every
one of them goes through the same code on the same cases, so the table that
compares them compares like with like.

Full ranking: the target is ranked against every item except the user's history
items (the filter the worker applies before recommending). If the target itself
also occurs earlier in the history it is *not* excluded: re-consumption is a
legitimate next item. Sampled: the target against `num_negatives` items drawn
uniformly from the items the user never interacted with (see `negatives.py`), as
in the SASRec paper; reported for comparison with published numbers only.

Ties are counted against the target (pessimistic): rank = number of candidates
scoring >= the target's score. A constant scorer therefore gets rank = all
candidates, never a lucky 0; a NaN or -inf target score is ranked last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
from tqdm import tqdm

from streamrec.common.errors import ConfigError
from streamrec.encoder.errors import EncoderError
from streamrec.encoder.negatives import sample_negatives
from streamrec.encoder.sequences import concat_sequences, pad_histories
from streamrec.encoder.split import EvalCases

logger = logging.getLogger(__name__)

EvalProtocol = Literal["full", "sampled"]
PROTOCOLS: tuple[EvalProtocol, ...] = ("full", "sampled")
DEFAULT_KS = (10, 20)


class Scorer(Protocol):
    """Scores every item row for a batch of histories."""

    def score(self, histories: np.ndarray) -> np.ndarray:
        """`histories` int64 `[B, L]`, left-padded with 0, most recent last ->
        float32 `[B, V + 1]` (column 0 is ignored). The result must be a fresh array:
        the evaluator overwrites it in place."""
        ...


@dataclass(frozen=True)
class Metrics:
    """Ranking quality of one scorer under one protocol."""

    protocol: str
    users: int
    hr: dict[int, float]  # k -> hit rate @k
    ndcg: dict[int, float]  # k -> NDCG @k (one relevant item: 1 / log2(rank + 2))
    mrr: float  # mean of 1 / (rank + 1), no cut-off
    ranks: np.ndarray = field(repr=False, compare=False)  # int64 [users], 0 = best

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: {"protocol", "users", "HR@10", "NDCG@10", ..., "MRR"}."""
        out: dict[str, Any] = {"protocol": self.protocol, "users": self.users}
        for k in sorted(self.hr):
            out[f"HR@{k}"] = self.hr[k]
            out[f"NDCG@{k}"] = self.ndcg[k]
        out["MRR"] = self.mrr
        return out


def metrics_from_ranks(ranks: np.ndarray, ks: Iterable[int], protocol: str) -> Metrics:
    """HR@k, NDCG@k and MRR of 0-based ranks (one relevant item per case)."""
    r = np.asarray(ranks, dtype=np.int64)
    rf = r.astype(np.float64)
    n = len(r)
    hr, ndcg = {}, {}
    for k in ks:
        hit = r < k
        hr[k] = float(hit.mean()) if n else 0.0
        ndcg[k] = float(np.where(hit, 1.0 / np.log2(rf + 2.0), 0.0).mean()) if n else 0.0
    mrr = float((1.0 / (rf + 1.0)).mean()) if n else 0.0
    return Metrics(protocol=protocol, users=n, hr=hr, ndcg=ndcg, mrr=mrr, ranks=r)


def full_ranks(scores: np.ndarray, histories: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among all items not in its history (pessimistic ties).

    Overwrites `scores` ([B, V + 1] float32) in place.
    """
    batch = len(targets)
    arange = np.arange(batch)
    target_scores = scores[arange, targets].copy()  # [B]
    flat, offsets = concat_sequences(histories)
    scores[np.repeat(arange, np.diff(offsets)), flat] = -np.inf
    scores[:, 0] = -np.inf
    scores[arange, targets] = -np.inf  # the target is compared through target_scores
    ranks = (scores >= target_scores[:, None]).sum(axis=1)
    ranks[~(target_scores > -np.inf)] = scores.shape[1] - 1  # NaN / -inf: ranked last
    return ranks.astype(np.int64)


def sampled_ranks(scores: np.ndarray, targets: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """0-based rank of each target among its negatives (row 0 = no negative; pessimistic ties)."""
    arange = np.arange(len(targets))
    target_scores = scores[arange, targets]  # [B]
    neg_scores = np.take_along_axis(scores, negatives, axis=1)  # [B, n]
    neg_scores[negatives == 0] = -np.inf
    ranks = (neg_scores >= target_scores[:, None]).sum(axis=1)
    ranks[~(target_scores > -np.inf)] = negatives.shape[1]
    return ranks.astype(np.int64)


def evaluate_protocols(
    scorer: Scorer,
    cases: EvalCases,
    *,
    num_items: int | None = None,
    protocols: Iterable[EvalProtocol] = PROTOCOLS,
    ks: Iterable[int] = DEFAULT_KS,
    batch_size: int = 512,
    max_len: int = 200,
    num_negatives: int = 100,
    seed: int = 42,
    progress: bool = False,
    name: str = "scorer",
) -> dict[str, Metrics]:
    """Every protocol from one scoring pass over `cases`; returns protocol -> Metrics.

    `num_items` (V) is checked against the scorer's output width when given, else
    read from it. `max_len` bounds the history width handed to the scorer (the full
    history is still excluded in full ranking); `seed` fixes the sampled negatives.
    """
    wanted = list(dict.fromkeys(protocols))
    unknown = [p for p in wanted if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(f"unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}")
    if batch_size < 1 or max_len < 1 or num_negatives < 1:
        raise ConfigError(
            f"batch_size, max_len and num_negatives must be >= 1, got {batch_size}, "
            f"{max_len}, {num_negatives}"
        )
    ks = tuple(ks)
    ranks: dict[str, list[np.ndarray]] = {p: [] for p in wanted}
    started = time.perf_counter()
    with tqdm(total=len(cases), desc=f"evaluate {name}", unit="user", disable=not progress) as bar:
        for start in range(0, len(cases), batch_size):
            stop = min(start + batch_size, len(cases))
            histories = cases.histories[start:stop]
            targets = cases.targets[start:stop]
            width = max(min(max_len, max(len(h) for h in histories)), 1)
            scores = _checked_scores(scorer.score(pad_histories(histories, width)), stop - start)
            if num_items is None:
                num_items = scores.shape[1] - 1
            elif scores.shape[1] != num_items + 1:
                raise EncoderError(
                    f"{name} scored {scores.shape[1]} columns, expected V + 1 = {num_items + 1}"
                )
            if "sampled" in ranks:  # before full ranking overwrites the scores
                negatives = sample_negatives(
                    cases.seen[start:stop], cases.users[start:stop], num_items, num_negatives, seed
                )
                ranks["sampled"].append(sampled_ranks(scores, targets, negatives))
            if "full" in ranks:
                ranks["full"].append(full_ranks(scores, histories, targets))
            bar.update(stop - start)
    out = {
        p: metrics_from_ranks(np.concatenate(r) if r else np.zeros(0, np.int64), ks, p)
        for p, r in ranks.items()
    }
    logger.info(
        "evaluated %s on %d users x %s items in %.1fs", name, len(cases), num_items,
        time.perf_counter() - started,
    )
    return out


def evaluate(
    scorer: Scorer,
    cases: EvalCases,
    *,
    protocol: EvalProtocol = "full",
    num_items: int | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    batch_size: int = 512,
    max_len: int = 200,
    num_negatives: int = 100,
    seed: int = 42,
    progress: bool = False,
    name: str = "scorer",
) -> Metrics:
    """One protocol's metrics (arguments as in `evaluate_protocols`)."""
    return evaluate_protocols(
        scorer, cases, num_items=num_items, protocols=(protocol,), ks=ks,
        batch_size=batch_size, max_len=max_len, num_negatives=num_negatives, seed=seed,
        progress=progress, name=name,
    )[protocol]


def evaluate_scorers(
    scorers: Mapping[str, Scorer], cases: EvalCases, **options: Any
) -> dict[str, dict[str, Metrics]]:
    """name -> protocol -> Metrics for several scorers on the same cases (for `report.py`)."""
    return {
        name: evaluate_protocols(scorer, cases, name=name, **options)
        for name, scorer in scorers.items()
    }


def _checked_scores(scores: Any, batch: int) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().float().cpu().numpy()
    scores = np.require(scores, dtype=np.float32, requirements=["C", "W"])
    if scores.ndim != 2 or scores.shape[0] != batch or scores.shape[1] < 2:
        raise EncoderError(f"scorer returned shape {scores.shape}, expected ({batch}, V + 1)")
    return scores


class ModelScorer:
    """A trained encoder as a Scorer: query[B, d] @ item_embeddings[V + 1, d].T.

    The model is put in eval mode for the call and restored afterwards, so the
    training loop can use this for validation between epochs. Histories are cut
    to the model's `max_len` (from `model.config.max_len` when not given) and
    their shared left padding is trimmed before encoding.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        max_len: int | None = None,
    ) -> None:
        self.model = model
        self.device = torch.device(device)
        self.batch_size = batch_size
        config = getattr(model, "config", None)
        self.max_len = max_len if max_len is not None else getattr(config, "max_len", None)

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, V + 1]` scores of every item for each history."""
        with torch.inference_mode():
            table = self.model.item_embeddings().float()  # [V + 1, d]
            out = np.empty((len(histories), table.shape[0]), dtype=np.float32)
            for start, query in self._encoded(histories):
                out[start : start + len(query)] = (query.float() @ table.T).cpu().numpy()
        return out

    def queries(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, d]` query vectors of the histories: what the worker searches with."""
        out = np.empty((len(histories), self.model.item_embeddings().shape[1]), np.float32)
        for start, query in self._encoded(histories):
            out[start : start + len(query)] = query.float().cpu().numpy()
        return out

    def _encoded(self, histories: np.ndarray) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, query vectors) per chunk of `batch_size` histories, in eval mode."""
        if self.max_len is not None:
            histories = histories[:, -self.max_len :]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(histories), self.batch_size):
                    chunk = histories[start : start + self.batch_size]
                    used = np.flatnonzero((chunk != 0).any(axis=0))
                    first = int(used[0]) if used.size else chunk.shape[1] - 1
                    trimmed = np.ascontiguousarray(chunk[:, first:])
                    items = torch.as_tensor(trimmed, device=self.device)
                    query, _ = self.model.encode(items)  # [b, d]
                    yield start, query
        finally:
            self.model.train(was_training)
