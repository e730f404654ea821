"""The traced serving encoder gives eager's results, or is not used at all."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from streamrec.encoder.compiled import trace_encoder
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec


def model() -> SASRec:
    torch.manual_seed(0)
    return SASRec(ModelConfig(num_items=30, max_len=12, hidden=16, blocks=2, heads=2,
                              dropout=0.0, emb_dropout=0.0)).eval()


@pytest.mark.parametrize(("batch", "width"), [(1, 12), (7, 12), (9, 5), (2, 1), (64, 3)])
def test_traced_encode_equals_eager_on_shapes_it_was_not_traced_with(
    batch: int, width: int,
) -> None:
    m = model()
    encode, traced = trace_encoder(m, torch.device("cpu"))
    assert traced
    items = torch.randint(0, 31, (batch, width), generator=torch.Generator().manual_seed(width))
    items[:, -1] = 1 + items[:, -1] % 30
    items[0, : width // 2] = 0  # left padding
    with torch.inference_mode():
        (q_want, a_want), (q_got, a_got) = m.encode(items), encode(items)
    torch.testing.assert_close(q_got, q_want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a_got, a_want, atol=1e-5, rtol=1e-5)


class ShapeBranching(SASRec):
    """An encoder with Python control flow over its input's shape: a trace freezes the
    branch its example took, so it is wrong for batches of other sizes."""

    def encode(self, items: Tensor) -> tuple[Tensor, Tensor]:
        query, attn = super().encode(items)
        if items.shape[0] > 4:
            query = query * 2
        return query, attn


def test_a_trace_that_disagrees_with_eager_is_not_served() -> None:
    torch.manual_seed(0)
    m = ShapeBranching(ModelConfig(num_items=30, max_len=12, hidden=16)).eval()
    encode, traced = trace_encoder(m, torch.device("cpu"))
    assert not traced
    assert encode == m.encode
