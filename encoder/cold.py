"""Item cold start, measured: hold items out of training entirely and rank them anyway.

`cold_item_split` picks a fraction of the items at random (fixed by the seed) as
*cold*: every interaction with them is removed from the data the model trains on,
so the model has never seen them, as with an item published yesterday. The
catalogue the scorers rank is the trained items (rows 1..V, the training vocabulary
in the same order) followed by the cold ones (rows V+1..V+C), so a model's table and
the evaluator agree on rows without a lookup.

Two sets of test cases, both full ranking over that catalogue with the user's
history excluded (`evaluate.py`):

- cold targets: a user's interaction with a cold item, ranked given everything the
  user did before it. The history keeps the cold items the user met earlier (they
  are consumed, so excluded from the ranking, and content-based scorers may read
  their features); a scorer that has no row for them drops them from its input
  (`ColdModelScorer`), as the worker drops unknown items. Each user gives at most
  `targets_per_user` cases (the last ones), so heavy users do not outweigh the rest.
- warm targets: the usual leave-one-out test of the training data (each user's last
  trained item; `split.leave_one_out`, which `train_model` also runs, so validation
  and test never leak into training), with the same history in catalogue rows.

The training data keeps the users' later warm interactions; a SASRec model has no
user embedding, so that leaks nothing about a cold target beyond what co-occurrence
of warm items already says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamrec.common.errors import ConfigError
from streamrec.encoder.data import Interactions, LoadReport
from streamrec.encoder.evaluate import Scorer
from streamrec.encoder.split import EvalCases, LeaveOneOut, leave_one_out
from streamrec.encoder.vocab import ItemVocab

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColdSplit:
    """What the model trains on, the catalogue it is ranked over, and both case sets."""

    train: Interactions  # warm items only, rows 1..V = catalogue rows 1..V
    catalogue: list[str]  # external ids of catalogue rows 1..V+C (trained, then cold)
    num_warm: int  # V
    cold_cases: EvalCases  # targets in V+1..V+C; histories in catalogue rows
    warm_cases: EvalCases  # the training data's leave-one-out test, in catalogue rows
    train_split: LeaveOneOut  # `leave_one_out(train)`: what `train_model` trains on
    cold_users_skipped: int  # users with a cold interaction but no warm item before it

    @property
    def num_cold(self) -> int:
        """C."""
        return len(self.catalogue) - self.num_warm

    @property
    def num_items(self) -> int:
        """V + C: the columns (less row 0) every scorer returns."""
        return len(self.catalogue)

    def cold_mask(self) -> np.ndarray:
        """bool `[V + C + 1]`, True on the cold rows."""
        mask = np.zeros(self.num_items + 1, dtype=bool)
        mask[self.num_warm + 1 :] = True
        return mask

    def train_counts(self) -> np.ndarray:
        """float32 `[V + C + 1]` training-part counts (cold rows and row 0 are 0)."""
        counts = np.zeros(self.num_items + 1, dtype=np.float32)
        counts[: self.num_warm + 1] = self.train_split.train_item_counts()
        return counts


def cold_item_split(
    interactions: Interactions,
    fraction: float = 0.15,
    *,
    seed: int = 42,
    targets_per_user: int = 1,
    min_interactions: int = 3,
) -> ColdSplit:
    """Hold out `fraction` of the items (at random, by `seed`) and build both case sets.

    `targets_per_user` caps the cold cases per user at their last N cold interactions
    (0: all of them); a cold interaction counts only when at least one warm item
    precedes it, since a model needs something to encode. `min_interactions` is the
    leave-one-out's (users with fewer training items are trained on, not evaluated).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"the cold fraction must be in (0, 1), got {fraction}")
    if targets_per_user < 0:
        raise ConfigError(f"targets_per_user must be >= 0 (0: all), got {targets_per_user}")
    total = interactions.num_items
    num_cold = min(max(round(fraction * total), 1), total - 1)
    if num_cold < 1:
        raise ConfigError(f"{total} item(s): too few to hold any out")
    rng = np.random.default_rng(seed)
    cold_old = np.sort(rng.choice(np.arange(1, total + 1), size=num_cold, replace=False))
    is_cold = np.zeros(total + 1, dtype=bool)
    is_cold[cold_old] = True
    order = np.concatenate([np.flatnonzero(~is_cold)[1:], cold_old])  # old rows, new order
    remap = np.zeros(total + 1, dtype=np.int64)
    remap[order] = np.arange(1, total + 1)
    num_warm = total - num_cold
    ids = interactions.vocab.ids
    catalogue = [ids[row - 1] for row in order.tolist()]
    full = [remap[s] for s in interactions.sequences]  # catalogue rows, oldest first
    train, kept_full = _warm_only(interactions, full, catalogue[:num_warm], num_warm)
    split = leave_one_out(train, min_interactions)
    warm_cases = _warm_cases(kept_full, split, num_warm)
    cold_cases, skipped = _cold_cases(full, num_warm, targets_per_user)
    logger.info(
        "cold split (seed %d): %d of %d items cold; %d training interactions of %d; "
        "%d cold cases, %d warm cases", seed, num_cold, total, train.num_interactions,
        interactions.num_interactions, len(cold_cases), len(warm_cases),
    )
    return ColdSplit(train=train, catalogue=catalogue, num_warm=num_warm,
                     cold_cases=cold_cases, warm_cases=warm_cases, train_split=split,
                     cold_users_skipped=skipped)


def _warm_only(interactions: Interactions, full: list[np.ndarray], warm_ids: list[str],
               num_warm: int) -> tuple[Interactions, list[np.ndarray]]:
    """The log without a single cold interaction (users left with none are dropped), and
    the full catalogue-row sequences of the users kept, in the same order."""
    keep = [i for i, seq in enumerate(full) if (seq <= num_warm).any()]
    sequences = [full[i][full[i] <= num_warm] for i in keep]
    n = int(sum(len(s) for s in sequences))
    old = interactions.report
    report = LoadReport(source=f"{old.source} (cold items held out)", format=old.format,
                        lines=old.lines, interactions=n, users=len(keep),
                        items=int(np.unique(np.concatenate(sequences)).size) if n else 0,
                        bad_lines=old.bad_lines, bad_examples=old.bad_examples)
    train = Interactions(users=[interactions.users[i] for i in keep], sequences=sequences,
                         vocab=ItemVocab(warm_ids), report=report)
    return train, [full[i] for i in keep]


def _warm_cases(kept_full: list[np.ndarray], split: LeaveOneOut, num_warm: int) -> EvalCases:
    """`split.test` with each history as the full one before the target (cold items kept)."""
    histories, seen = [], []
    for user in split.test.users.tolist():
        seq = kept_full[user]
        last = int(np.flatnonzero(seq <= num_warm)[-1])  # the target: the last trained item
        histories.append(seq[:last])
        seen.append(seq)
    return EvalCases(users=split.test.users, histories=histories, targets=split.test.targets,
                     seen=seen)


def _cold_cases(full: list[np.ndarray], num_warm: int,
                per_user: int) -> tuple[EvalCases, int]:
    """Each user's last `per_user` cold interactions (0: all) with a warm item before them."""
    users, histories, targets, seen = [], [], [], []
    skipped = 0
    for user, seq in enumerate(full):
        cold_at = np.flatnonzero(seq > num_warm)
        if not cold_at.size:
            continue
        first_warm = np.flatnonzero(seq <= num_warm)
        usable = cold_at[cold_at > first_warm[0]] if first_warm.size else cold_at[:0]
        if not usable.size:
            skipped += 1
            continue
        for at in (usable if per_user == 0 else usable[-per_user:]).tolist():
            users.append(user)
            histories.append(seq[:at])
            targets.append(int(seq[at]))
            seen.append(seq)
    cases = EvalCases(users=np.asarray(users, dtype=np.int64), histories=histories,
                      targets=np.asarray(targets, dtype=np.int64), seen=seen)
    return cases, skipped


def drop_cold(histories: np.ndarray, num_warm: int) -> np.ndarray:
    """`[B, L]` left-padded histories without their cold rows, left-padded again.

    For scorers that know only rows 1..V: a cold row would index past their table.
    A stable sort on "is a real warm item" moves the padding and the dropped rows to
    the left and keeps the order of the rest, in one vectorised pass.
    """
    keep = (histories > 0) & (histories <= num_warm)
    order = np.argsort(keep, axis=1, kind="stable")  # False (dropped) first, in order
    out = np.take_along_axis(np.where(keep, histories, 0), order, axis=1)
    used = np.flatnonzero(out.any(axis=0))
    return out[:, used[0]:] if used.size else out[:, -1:]


class ColdModelScorer:
    """A trained encoder over the catalogue: its own rows, then a vector per cold item.

    `queries` maps warm-only histories to query vectors (`ModelScorer.queries`);
    `table` is the model's float32 `[V + 1, d]` item table and `cold_table` the
    `[C, d]` vectors it gives the cold items (from their content), or None for a
    model without features, which cannot score them: their columns are -inf.
    """

    def __init__(self, queries: Callable[[np.ndarray], np.ndarray], table: np.ndarray,
                 cold_table: np.ndarray | None, num_cold: int) -> None:
        if cold_table is not None and cold_table.shape != (num_cold, table.shape[1]):
            raise ConfigError(f"cold table of shape {cold_table.shape}, expected "
                              f"({num_cold}, {table.shape[1]})")
        self.queries = queries
        self.num_warm = table.shape[0] - 1
        self.num_cold = num_cold
        self.table = (table if cold_table is None
                      else np.concatenate([table, cold_table])).astype(np.float32)

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, V + C + 1]`."""
        query = self.queries(drop_cold(histories, self.num_warm))  # [B, d]
        scores = query.astype(np.float32) @ self.table.T  # [B, V + 1 (+ C)]
        if scores.shape[1] == self.num_warm + 1 + self.num_cold:
            return scores
        cold = np.full((len(histories), self.num_cold), -np.inf, dtype=np.float32)
        return np.concatenate([scores, cold], axis=1)


def without_seen(scores: np.ndarray, histories: np.ndarray) -> np.ndarray:
    """`scores` `[B, N]` with the padding row 0 and each row's history (`[B, L]`,
    left-padded with 0) set to -inf, in place; returned for chaining."""
    scores[:, 0] = -np.inf
    np.put_along_axis(scores, np.maximum(histories, 0), -np.inf, axis=1)
    return scores


class Restricted:
    """Any scorer with every row outside `candidates` (bool `[V + C + 1]`) set to -inf.

    With the cold rows as candidates it turns a scorer into one that knows which items
    are new: baseline (d) from (c), and the model's own ranking of the cold items
    alone, which tells a content tower's ordering of them apart from its calibration
    against the trained items."""

    def __init__(self, scorer: Scorer, candidates: np.ndarray) -> None:
        self.scorer = scorer
        self.blocked = ~np.asarray(candidates, dtype=bool)

    def score(self, histories: np.ndarray) -> np.ndarray:
        """The wrapped scores, -inf outside the candidates."""
        scores = np.array(self.scorer.score(histories), dtype=np.float32)
        if scores.shape[1] != len(self.blocked):
            raise ConfigError(f"scorer returned {scores.shape[1]} columns, the candidates "
                              f"mask has {len(self.blocked)}")
        scores[:, self.blocked] = -np.inf
        return scores


class FreshSlots:
    """A scorer whose top `k` always holds its `slots` best cold items (the worker's
    `--fresh-slots`): a cold pick below the top k is lifted just above the first item
    it displaces, so the list is the top k - m others and the m missing picks, each
    where its place in that list falls. Histories are excluded as `evaluate` does."""

    def __init__(self, scorer: Scorer, cold: np.ndarray, k: int = 10, slots: int = 1) -> None:
        self.scorer = scorer
        self.cold = np.asarray(cold, dtype=bool)
        self.k, self.slots = k, slots

    def score(self, histories: np.ndarray) -> np.ndarray:
        """The wrapped scores with each row's missing cold picks lifted into its top k."""
        scores = np.array(self.scorer.score(histories), dtype=np.float32)
        masked = without_seen(scores.copy(), histories)
        k, s = min(self.k, masked.shape[1] - 1), self.slots
        top = np.argsort(-masked, axis=1, kind="stable")[:, :k]  # [B, k]
        cold = np.where(self.cold, masked, -np.inf)
        picks = np.argsort(-cold, axis=1, kind="stable")[:, :s]  # [B, s]
        found = np.take_along_axis(cold, picks, axis=1) > -np.inf
        inside = (picks[:, :, None] == top[:, None, :]).any(axis=2) | ~found
        for i in np.flatnonzero(~inside.all(axis=1)).tolist():
            missing = picks[i][~inside[i]]
            m = len(missing)
            floor = float(masked[i, top[i, k - m]])  # the first item they displace
            gap = float(masked[i, top[i, k - m - 1]]) - floor if k - m > 0 else 1.0
            step = min(gap, 1.0) / (m + 1)
            for j, row in enumerate(missing.tolist()):  # best pick highest
                scores[i, row] = floor + step * (m - j)
        return scores


class Calibrated:
    """A scorer whose trained and cold items compete as probabilities, not raw scores.

    The tower's content vectors and the ID table are not on one scale, so a raw score
    says little about whether a cold item beats a trained one. Here each user's scores
    become a softmax over the trained items and one over the cold items (their scores
    divided by `temperature`), mixed by a prior share of the next events that go to a
    cold item: log((1 - prior) p_trained(i)) and log(prior p_cold(i)). Each kind keeps
    the wrapped scorer's order; the user's history is left out of both softmaxes.
    """

    def __init__(self, scorer: Scorer, num_warm: int, prior: float,
                 temperature: float = 1.0) -> None:
        if not 0.0 < prior < 1.0:
            raise ConfigError(f"the prior share of cold items must be in (0, 1), got {prior}")
        if temperature <= 0.0:
            raise ConfigError(f"the temperature must be > 0, got {temperature}")
        self.scorer, self.num_warm = scorer, num_warm
        self.prior, self.temperature = prior, temperature

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 `[B, V + C + 1]`: log-probabilities of the mixture, -inf where the
        wrapped scorer had -inf and on the history."""
        scores = without_seen(np.array(self.scorer.score(histories), dtype=np.float64),
                              histories)
        v = self.num_warm
        parts = ((slice(1, v + 1), 1.0, np.log1p(-self.prior)),
                 (slice(v + 1, None), self.temperature, np.log(self.prior)))
        for columns, temperature, log_share in parts:
            part = scores[:, columns] / temperature
            with np.errstate(invalid="ignore"):  # a row with nothing left: all -inf
                norm = np.logaddexp.reduce(part, axis=1, keepdims=True)
                scores[:, columns] = np.where(np.isfinite(norm), part - norm + log_share,
                                              -np.inf)
        return scores.astype(np.float32)
