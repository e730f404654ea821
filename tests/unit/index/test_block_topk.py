"""The two-stage (block maxima) top-k gives exactly the full top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrec.index.torch_index import BLOCK, TorchIndex, masked_topk, scripted_masked_topk


def full_topk(table: np.ndarray, queries: np.ndarray, banned: np.ndarray, k: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """The plain answer: every score, padding row and banned rows at -inf, sorted."""
    scores = queries @ table.T
    scores[:, 0] = -np.inf
    for i, row in enumerate(banned):
        scores[i, row] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("rows", [2, 11, 128, 129, 1000, 5003])
@pytest.mark.parametrize("k", [1, 10, 40])
def test_equals_the_full_top_k(rows: int, k: int) -> None:
    rng = np.random.default_rng(rows * 100 + k)
    table = rng.standard_normal((rows, 8)).astype(np.float32)
    table[0] = 0
    queries = rng.standard_normal((37, 8)).astype(np.float32)
    banned = rng.integers(0, rows, size=(37, 30))
    index = TorchIndex(table, device="cpu")
    k_eff = min(k, rows - 1)
    for search in (masked_topk, scripted_masked_topk()):
        values, found = search(torch.as_tensor(queries), index._table_t,
                               torch.as_tensor(banned), k_eff, 5, rows, BLOCK)
        want_values, want_rows = full_topk(table, queries, banned, k_eff)
        np.testing.assert_allclose(values.numpy(), want_values, rtol=1e-5, atol=1e-5)
        finite = np.isfinite(want_values)
        np.testing.assert_array_equal(found.numpy()[finite], want_rows[finite])


def test_the_search_is_served_scripted() -> None:
    """Scripting fails quietly into the eager function (same results, more GIL round
    trips); the worker must not depend on that fallback."""
    assert isinstance(scripted_masked_topk(), torch.jit.ScriptFunction)


def test_a_query_with_everything_banned_finds_nothing() -> None:
    table = np.eye(6, dtype=np.float32)
    index = TorchIndex(table, device="cpu")
    result = index.search(np.ones((1, 6), dtype=np.float32), 3, np.array([[1, 2, 3, 4, 5]]))
    assert result.rows.tolist() == [[-1, -1, -1]]
