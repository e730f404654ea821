"""The co-occurrence start: exact pairs, neighbours close together, deterministic, padding zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrec.common.errors import ConfigError
from streamrec.encoder.cooccurrence import (
    cooccurrence_embeddings,
    cooccurrence_pairs,
    ppmi_matrix,
)


def test_pairs_stay_inside_one_sequence_and_weigh_by_distance() -> None:
    rows, cols, weights = cooccurrence_pairs([np.array([1, 2, 3]), np.array([4, 5])], window=2)
    got = sorted(zip(rows.tolist(), cols.tolist(), weights.tolist(), strict=True))
    assert got == sorted([
        (1, 2, 1.0), (2, 1, 1.0), (2, 3, 1.0), (3, 2, 1.0), (4, 5, 1.0), (5, 4, 1.0),
        (1, 3, 0.5), (3, 1, 0.5),
    ])  # never (3, 4): the sequences are separate


def test_items_bought_together_start_close() -> None:
    rng = np.random.default_rng(0)
    # Two worlds of 10 items each (think two consoles); users stay in one world.
    sequences = [rng.choice(np.arange(1, 11) + 10 * (u % 2), size=6) for u in range(400)]
    torch.manual_seed(0)
    table = cooccurrence_embeddings(sequences, num_items=20, dim=4, std=0.05)
    assert table.shape == (21, 4)
    assert torch.equal(table[0], torch.zeros(4))
    assert float(table[1:].std()) == pytest.approx(0.05, rel=1e-4)
    unit = torch.nn.functional.normalize(table[1:], dim=1)
    cos = unit @ unit.T
    same = cos[:10, :10].mean() + cos[10:, 10:].mean()
    other = cos[:10, 10:].mean() * 2
    assert same > other + 0.5
    torch.manual_seed(0)
    assert torch.equal(table, cooccurrence_embeddings(sequences, num_items=20, dim=4, std=0.05))


def test_ppmi_keeps_only_pairs_seen_together_more_than_chance() -> None:
    # 1 and 2 always together, 3 and 4 always together, 5 with everyone.
    sequences = [np.array([1, 2, 5])] * 3 + [np.array([3, 4, 5])] * 3
    ppmi = ppmi_matrix(sequences, num_items=6, window=1).to_dense()
    assert ppmi.shape == (7, 7)
    assert torch.equal(ppmi, ppmi.T)
    assert (ppmi >= 0).all()
    assert ppmi[1, 2] > 0
    assert ppmi[3, 4] > 0
    assert ppmi[1, 3] == 0  # never together
    assert ppmi[1, 4] == 0
    assert ppmi[0].abs().sum() == 0
    assert ppmi[6].abs().sum() == 0  # row 0 is padding, item 6 never seen
    empty = ppmi_matrix([np.array([3])], num_items=5, window=2)
    assert empty.shape == (6, 6)
    assert empty.values().numel() == 0


def test_nothing_to_factorise_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="co-occurs"):
        cooccurrence_embeddings([np.array([3])], num_items=5, dim=2)
    with pytest.raises(ConfigError, match="window"):
        cooccurrence_pairs([np.array([1, 2])], window=0)
