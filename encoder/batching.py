"""Training batches: users of similar length, shuffled, and shared out among processes.

Most histories are short, so a batch groups users of similar length and is trimmed to
its longest history (`train_batches`). Under torchrun every process cuts the very same
batches (the same seed) and trains on its own share of each (`shard`): `batch_size`
stays the global batch, every user of an epoch lands on exactly one process, and every
process takes the same number of steps, which DistributedDataParallel needs (a process
with a step more would wait forever for the others' gradients).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from streamrec.encoder.errors import TrainingError
from streamrec.encoder.sequences import pad_histories

logger = logging.getLogger(__name__)


def batch_bounds(n: int, batch_size: int, world_size: int = 1) -> np.ndarray:
    """[S, 2] (start, stop) of the global batches over `n` ordered users.

    Batches of `batch_size`; a last batch too small to give every process a user joins
    the one before it. One process: exactly the batches of `range(0, n, batch_size)`.
    """
    if batch_size < world_size:
        raise TrainingError(f"batch size {batch_size} is the global batch, shared by "
                            f"{world_size} processes: give at least {world_size}")
    if n < world_size:
        raise TrainingError(f"{n} users to train on cannot be shared by {world_size} "
                            "processes: start fewer")
    starts = np.arange(0, n, batch_size)
    stops = np.append(starts[1:], n)
    if len(starts) > 1 and stops[-1] - starts[-1] < world_size:
        starts, stops = starts[:-1], np.append(stops[:-2], n)
    return np.stack([starts, stops], axis=1)


def shard(members: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The users of a global batch that process `rank` trains on: every `world_size`-th.

    Batches are sorted by history length, so the shares are alike in length and in
    positions, and the mean of the processes' mean losses is close to the batch's.
    """
    return members[rank::world_size]


def train_batches(seqs: list[np.ndarray], max_len: int, batch_size: int,
                  rng: np.random.Generator, rank: int = 0, world_size: int = 1,
                  ) -> Iterator[tuple[Tensor, Tensor]]:
    """(inputs [B, W], targets [B, W]) batches of users of similar length, in random order.

    Users are sorted by length (random order within a length), cut into batches,
    and the batches shuffled; each batch is only as wide as its longest history.
    With several processes `rng` must be the same on all of them: process `rank`
    gets its share of every batch.
    """
    lengths = np.fromiter((min(len(s), max_len + 1) for s in seqs), dtype=np.int64)
    order = np.lexsort((rng.random(len(seqs)), lengths))
    bounds = batch_bounds(len(order), batch_size, world_size)
    for start, stop in bounds[rng.permutation(len(bounds))].tolist():
        members = shard(order[start:stop], rank, world_size)
        width = int(lengths[members].max())
        padded = torch.from_numpy(pad_histories([seqs[i] for i in members], width))
        yield padded[:, :-1], padded[:, 1:]  # item t predicts item t + 1
