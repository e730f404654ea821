"""Training batches shared among torchrun processes: each user once, equal step counts."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.common.errors import ConfigError
from streamrec.encoder.batching import batch_bounds, train_batches
from streamrec.encoder.distributed import Ranks, ranks_from_env
from streamrec.encoder.errors import TrainingError


def histories(n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` users; user u's history is [u + 1] repeated, 2..12 items long."""
    lengths = np.random.default_rng(seed).integers(2, 13, n)
    return [np.full(int(k), u + 1, dtype=np.int64) for u, k in enumerate(lengths)]


def users_per_step(seqs: list[np.ndarray], batch_size: int, rank: int,
                   world: int) -> list[list[int]]:
    """The users (row value - 1) process `rank` trains on at each step of one epoch."""
    rng = np.random.default_rng([7, 1])  # the same on every process, as in train.py
    steps = []
    for _, y in train_batches(seqs, 10, batch_size, rng, rank, world):
        steps.append([int(row[row > 0][0]) - 1 for row in y.numpy()])  # targets: [u + 1]...
    return steps


@pytest.mark.parametrize(("n", "batch_size", "world"),
                         [(100, 32, 2), (97, 32, 2), (65, 32, 2), (66, 32, 4), (10, 3, 3),
                          (129, 64, 8), (7, 8, 7)])
def test_every_user_trains_on_exactly_one_process_and_all_take_the_same_steps(
    n: int, batch_size: int, world: int
) -> None:
    seqs = histories(n)
    per_rank = [users_per_step(seqs, batch_size, rank, world) for rank in range(world)]
    counts = {len(steps) for steps in per_rank}
    assert len(counts) == 1  # DDP would wait forever for a process with a step more
    assert all(step for steps in per_rank for step in steps)  # nobody steps on nothing
    seen = [u for steps in per_rank for step in steps for u in step]
    assert sorted(seen) == list(range(n))
    # Step by step, the processes' shares together are one global batch of the 1-process run.
    single = users_per_step(seqs, batch_size, 0, 1)
    if n % batch_size == 0 or n % batch_size >= world:
        together = [sorted(u for steps in per_rank for u in steps[i]) for i in range(len(single))]
        assert together == [sorted(step) for step in single]


def test_one_process_cuts_the_batches_it_always_did() -> None:
    assert batch_bounds(10, 4).tolist() == [[0, 4], [4, 8], [8, 10]]
    assert batch_bounds(10, 4, 2).tolist() == [[0, 4], [4, 8], [8, 10]]
    assert batch_bounds(9, 4, 2).tolist() == [[0, 4], [4, 9]]  # 1 user cannot feed 2
    assert batch_bounds(3, 4, 3).tolist() == [[0, 3]]


def test_a_batch_smaller_than_the_processes_is_refused() -> None:
    with pytest.raises(TrainingError, match="global batch"):
        batch_bounds(100, 4, 8)
    with pytest.raises(TrainingError, match="start fewer"):
        batch_bounds(3, 4, 4)


def test_ranks_come_from_torchrun_or_default_to_one_process() -> None:
    assert ranks_from_env({}) == Ranks()
    assert Ranks().is_main
    assert not Ranks().distributed
    ranks = ranks_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ranks.rank, ranks.world_size, ranks.local_rank) == (3, 4, 1)
    assert ranks.distributed
    assert not ranks.is_main
    with pytest.raises(ConfigError, match="torchrun"):
        ranks_from_env({"WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="outside"):
        ranks_from_env({"RANK": "2", "WORLD_SIZE": "2"})
