"""`Recommender.encode` in length buckets: the same vectors as one call, less padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.encoder.vocab import ItemVocab
from streamrec.worker import recommend
from streamrec.worker.recommend import Recommender, length_buckets
from tests.unit.worker.helpers import tiny_recommender

MAX_LEN = 40


def recommender(tmp_path: Path) -> Recommender:
    vocab = ItemVocab([f"i{n}" for n in range(60)])
    return tiny_recommender(tmp_path, vocab, max_len=MAX_LEN, hidden=16, blocks=2, heads=2)


def batch(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded histories of mixed lengths, mostly short, some empty."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.12, rows), MAX_LEN)
    lengths[rng.random(rows) < 0.1] = 0
    histories = np.zeros((rows, MAX_LEN), dtype=np.int64)
    for i, n in enumerate(lengths):
        if n:
            histories[i, MAX_LEN - n:] = rng.integers(1, 61, n)
    return histories, lengths


def test_buckets_cover_every_non_empty_row_once_and_small_ones_merge() -> None:
    lengths = np.array([0, 3, 40, 9, 17, 0])
    assert [(r.tolist(), n) for r, n in length_buckets(lengths)] == [([1, 3, 4, 2], 40)]
    assert length_buckets(np.zeros(3, dtype=np.int64)) == []
    _, lengths = batch(400)
    buckets = length_buckets(lengths)
    assert len(buckets) > 1
    rows = np.concatenate([r for r, _ in buckets])
    assert sorted(rows.tolist()) == np.flatnonzero(lengths > 0).tolist()
    for r, longest in buckets:
        assert longest == lengths[r].max()


def test_a_few_short_histories_are_not_padded_to_a_long_one() -> None:
    # a half-load batch: most histories short, a few long; 8 short rows are a call
    lengths = np.array([3] * 8 + [40] * 16)
    assert [(r.tolist(), n) for r, n in length_buckets(lengths)] == [
        (list(range(8)), 3), (list(range(8, 24)), 40)]
    lengths = np.array([3] * 7 + [40])  # fewer: padding them costs less than a call
    assert [(r.tolist(), n) for r, n in length_buckets(lengths)] == [(list(range(8)), 40)]


def test_bucketed_encode_gives_what_one_call_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = recommender(tmp_path)
    histories, lengths = batch(400)
    assert len(length_buckets(lengths)) > 1
    bucketed = rec.encode(histories, lengths)
    monkeypatch.setattr(recommend, "BUCKET_MIN_ROWS", 10**9)  # one bucket: one call
    assert len(length_buckets(lengths)) == 1
    whole = rec.encode(histories, lengths)
    np.testing.assert_allclose(bucketed.queries, whole.queries, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bucketed.attention, whole.attention, rtol=1e-5, atol=1e-6)
    assert (bucketed.has_history == (lengths > 0)).all()
    assert not bucketed.queries[lengths == 0].any()


def test_ladder_sizes_bound_the_padding() -> None:
    sizes = [recommend.ladder_size(n) for n in range(1, 2049)]
    assert sizes[:9] == [1, 2, 3, 4, 6, 6, 8, 8, 12]
    assert all(n <= s < 1.5 * n or s == n for n, s in enumerate(sizes, start=1))
    assert len(set(sizes)) == 22  # 2048 sizes become 22 shapes


def test_padded_calls_see_only_ladder_shapes_and_give_each_rows_own_vector(
    tmp_path: Path,
) -> None:
    import torch

    rec = recommender(tmp_path)
    seen: list[tuple[int, int]] = []
    traced = rec._encode

    def spy(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(tuple(items.shape))
        return traced(items)

    rec._encode = spy  # type: ignore[method-assign]
    histories, lengths = batch(77, seed=3)
    encoded = rec.encode(histories, lengths)
    ladder = {recommend.ladder_size(n) for n in range(1, 1025)}
    assert seen
    assert all(rows in ladder and (cols in ladder or cols == MAX_LEN) for rows, cols in seen)
    model = rec.checkpoint.model
    with torch.inference_mode():
        for i in np.flatnonzero(lengths > 0)[:20]:
            alone = torch.as_tensor(histories[i:i + 1, MAX_LEN - lengths[i]:])
            np.testing.assert_allclose(encoded.queries[i], model.encode(alone)[0][0].numpy(),
                                       rtol=1e-4, atol=1e-5)
