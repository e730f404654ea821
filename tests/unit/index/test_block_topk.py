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
        values, found = search(torch.as_tensor(queries), index._scoring,
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


def test_rescoring_restores_the_float32_order_that_bfloat16_rounds_away() -> None:
    """Scores 1.000 and 1.002 are one bfloat16 value; float32 rescoring ranks them."""
    table = np.zeros((4, 2), dtype=np.float32)
    table[1], table[2], table[3] = [1.0, 0.0], [1.002, 0.0], [0.5, 0.0]
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    rounded = TorchIndex(table, device="cpu", score_dtype="bfloat16")
    assert rounded.search(query, 2).scores[0, 0] == rounded.search(query, 2).scores[0, 1]
    index = TorchIndex(table, device="cpu", score_dtype="bfloat16", rescore=True)
    found = index.search(query, 2)
    assert found.rows.tolist() == [[2, 1]]
    np.testing.assert_allclose(found.scores[0], [1.002, 1.0], rtol=1e-6)
    assert index.approximate
    assert index.name == "torch-cpu-bfloat16-rescored"


def test_rescored_search_finds_the_float32_top_k_of_a_large_table() -> None:
    """Over 20,000 random items, 200 queries with 30 banned rows each: the same rows
    as float32 exact search."""
    rng = np.random.default_rng(7)
    table = rng.standard_normal((20_001, 16)).astype(np.float32)
    queries = rng.standard_normal((200, 16)).astype(np.float32)
    banned = rng.integers(1, 20_001, size=(200, 30))
    exact = TorchIndex(table, device="cpu").search(queries, 10, banned)
    rescored = TorchIndex(table, device="cpu", score_dtype="bfloat16", rescore=True)
    found = rescored.search(queries, 10, banned)
    assert (found.rows == exact.rows).mean() > 0.999
    assert not (found.rows[:, :, None] == banned[:, None, :]).any()


def test_rescoring_needs_16_bit_scores() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        TorchIndex(np.eye(3, dtype=np.float32), device="cpu", rescore=True)


def _bf16_index(table: np.ndarray) -> TorchIndex:
    return TorchIndex(table, device="cpu", score_dtype="bfloat16", rescore=True)


def test_a_cpu_with_onednn_bfloat16_scores_on_the_packed_table() -> None:
    """Where oneDNN has bfloat16 kernels the table is packed once (the speed-up of
    `pack_table`), not reordered by every matmul; elsewhere the plain matmul serves."""
    table = np.random.default_rng(3).standard_normal((500, 16)).astype(np.float32)
    supported = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert _bf16_index(table).packed == supported
    assert not TorchIndex(table, device="cpu").packed  # float32 scores: never packed


def test_the_packed_table_finds_what_the_plain_matmul_finds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 20,000 items, batches that span several chunks (and end in a partial one),
    each query with its own banned rows, some rows unavailable: the same rows and
    scores as the plain matmul's path."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no oneDNN bfloat16 kernels on this CPU: nothing is packed")
    rng = np.random.default_rng(11)
    table = rng.standard_normal((20_001, 16)).astype(np.float32)
    queries = rng.standard_normal((230, 16)).astype(np.float32)
    banned = rng.integers(1, 20_001, size=(230, 40))
    unavailable = np.zeros(20_001, dtype=bool)
    unavailable[rng.integers(1, 20_001, size=300)] = True
    packed = _bf16_index(table)
    monkeypatch.setattr("streamrec.index.torch_index.pack_table", lambda *_: None)
    plain = _bf16_index(table)
    assert packed.packed
    assert not plain.packed
    assert 230 % packed.chunk  # a partial last chunk
    assert 3 * packed.chunk < 230  # several chunks
    for index in (packed, plain):
        index.set_unavailable(unavailable)
    for k in (1, 10, 25):
        got, want = packed.search(queries, k, banned), plain.search(queries, k, banned)
        np.testing.assert_array_equal(got.rows, want.rows)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
        assert not np.isin(got.rows, np.flatnonzero(unavailable)).any()
        assert not (got.rows[:, :, None] == banned[:, None, :]).any()


def test_a_packed_table_that_scores_wrong_is_not_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """The packed product is checked once against the plain one: a pack that disagrees
    (another torch's layout, a renamed op) leaves the plain matmul, with right answers."""
    scripted_masked_topk()  # scripted (and cached) with the real `packed_scores`
    monkeypatch.setattr("streamrec.index.torch_index.packed_scores",
                        lambda q, packed: torch.zeros(q.shape[0], 1, dtype=q.dtype))
    rng = np.random.default_rng(5)
    table = rng.standard_normal((3_000, 16)).astype(np.float32)
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    index = _bf16_index(table)
    assert not index.packed
    want = TorchIndex(table, device="cpu").search(queries, 10)
    assert (index.search(queries, 10).rows == want.rows).mean() > 0.99
