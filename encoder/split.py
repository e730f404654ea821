"""Leave-one-out split: what a model may train on, and what it is tested on.

The protocol of the SASRec paper and of most sequential-recommendation work:
each user's last interaction is the test target, the second-to-last the
validation target, the rest is training. Users with fewer than
`min_interactions` interactions are not evaluated (their whole sequence goes to
training, where it leaks nothing). Every array here is a view into the loaded
sequences, so the split costs a few list entries per user, not a copy of the data.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.common.errors import ConfigError
from streamrec.encoder.data import Interactions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalCases:
    """One ranking case per user: a history, the held-out next item, and all items seen.

    `histories[i]` is oldest first (rows 1..V); `targets[i]` is the item to rank;
    `seen[i]` is everything the user ever interacted with (the full sequence, future
    included), from which the sampled protocol never draws negatives.
    """

    users: np.ndarray  # int64 [N], indices into Interactions.users
    histories: list[np.ndarray]
    targets: np.ndarray  # int64 [N]
    seen: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, index: Sequence[int] | np.ndarray) -> EvalCases:
        """The cases at `index` (e.g. a random sample of users for a quick validation)."""
        idx = np.asarray(index, dtype=np.int64)
        picks = idx.tolist()
        return EvalCases(
            users=self.users[idx], histories=[self.histories[i] for i in picks],
            targets=self.targets[idx], seen=[self.seen[i] for i in picks],
        )

    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray]) -> EvalCases:
        """Last item of each sequence as target, the rest as history (sequences of length >= 2)."""
        short = [i for i, s in enumerate(sequences) if len(s) < 2]
        if short:
            raise ConfigError(f"{len(short)} sequences are shorter than 2; nothing to hold out")
        return cls(
            users=np.arange(len(sequences), dtype=np.int64),
            histories=[s[:-1] for s in sequences],
            targets=np.fromiter((s[-1] for s in sequences), dtype=np.int64, count=len(sequences)),
            seen=list(sequences),
        )


@dataclass(frozen=True)
class LeaveOneOut:
    """Training sequences for every user; validation and test cases for evaluated users."""

    train: list[np.ndarray]  # all but the last two items (whole sequence for skipped users)
    validation: EvalCases  # history = all but last two, target = second-to-last
    test: EvalCases  # history = all but last, target = last
    num_items: int  # V
    min_interactions: int
    skipped_users: int  # users with fewer than min_interactions: trained on, not evaluated

    def with_validation_trained(self) -> LeaveOneOut:
        """The same split whose training part keeps each evaluated user's validation item
        (`TrainConfig.fit_validation`): all but the last item; the test stays out."""
        train = list(self.train)
        for user, target in zip(self.validation.users.tolist(), self.validation.targets.tolist(),
                                strict=True):
            train[user] = np.append(train[user], target)
        return dataclasses.replace(self, train=train)

    def train_item_counts(self) -> np.ndarray:
        """float32 `[V + 1]` popularity over the training part only (row 0 = 0)."""
        counts = np.zeros(self.num_items + 1, dtype=np.float32)
        if self.train:
            counts += np.bincount(np.concatenate(self.train), minlength=self.num_items + 1)
        counts[0] = 0.0
        return counts


def leave_one_out(interactions: Interactions, min_interactions: int = 3) -> LeaveOneOut:
    """Split every user's sequence: last -> test, second-to-last -> validation, rest -> train."""
    if min_interactions < 3:
        raise ConfigError(
            f"min_interactions must be >= 3 (one training, one validation and one test item), "
            f"got {min_interactions}"
        )
    seqs = interactions.sequences
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    evaluated = np.flatnonzero(lengths >= min_interactions)
    picks = evaluated.tolist()
    full = [seqs[i] for i in picks]
    is_eval = lengths >= min_interactions
    train = [s[:-2] if e else s for s, e in zip(seqs, is_eval.tolist(), strict=True)]
    validation = EvalCases(
        users=evaluated, histories=[s[:-2] for s in full],
        targets=np.fromiter((s[-2] for s in full), dtype=np.int64, count=len(full)), seen=full,
    )
    test = EvalCases(
        users=evaluated, histories=[s[:-1] for s in full],
        targets=np.fromiter((s[-1] for s in full), dtype=np.int64, count=len(full)), seen=full,
    )
    skipped = len(seqs) - len(picks)
    logger.info(
        "leave-one-out: %d users evaluated, %d with fewer than %d interactions only trained on",
        len(picks), skipped, min_interactions,
    )
    return LeaveOneOut(
        train=train, validation=validation, test=test, num_items=interactions.num_items,
        min_interactions=min_interactions, skipped_users=skipped,
    )
