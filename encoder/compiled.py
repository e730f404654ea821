"""The serving encoder as one TorchScript graph: fewer GIL round trips per batch.

The worker runs the model on its own thread beside a pure-Python Kafka loop. Eager
PyTorch takes the GIL back after every operator (a two-block encoder is about 60 of
them), and each time may wait for the loop's thread to let go of it; a traced graph
runs all of them in C++ with the GIL released. `trace_encoder` traces `SASRec.encode`
once at load, checks it against eager on probe batches of other shapes (a trace
that silently froze a shape would fail there), and falls back to eager with a
warning when tracing fails or disagrees. Same code on CPU and CUDA. A model with a
content tower is served from its item table, computed once here, so a batch looks
its items' rows up instead of running each through the tower again.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from streamrec.encoder.model import SASRec

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Tensor], tuple[Tensor, Tensor]]
TOLERANCE = 1e-4  # float32 reassociation differences are far below this


class _Encode(nn.Module):
    """`SASRec.encode` as a module's forward, for `torch.jit.trace`."""

    def __init__(self, model: SASRec, table: Tensor | None) -> None:
        super().__init__()
        self.model = model
        # A buffer (None without a tower): the trace reads it, it is not baked into the graph.
        self.register_buffer("table", table)

    def forward(self, items: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.encode(items, self.table)


def trace_encoder(model: SASRec, device: torch.device) -> tuple[EncodeFn, bool]:
    """(encode function, whether it is the traced graph) for serving on `device`."""
    model = model.eval()
    table = None
    if model.content is not None:
        with torch.inference_mode():
            table = model.item_embeddings().to(device)  # [V + 1, d], ID + content
    eager: EncodeFn = model.encode if table is None else functools.partial(model.encode,
                                                                          table=table)
    max_len = model.config.max_len
    vocab = model.config.num_items
    gen = torch.Generator().manual_seed(0)

    def probe(batch: int, width: int) -> Tensor:
        items = torch.randint(0, vocab + 1, (batch, width), generator=gen)
        items[:, -1] = torch.randint(1, vocab + 1, (batch,), generator=gen)  # newest present
        return items.to(device)

    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about constant shapes
            traced = torch.jit.trace(_Encode(model, table), probe(4, max_len),
                                     check_trace=False)
            for batch, width in ((3, max_len), (5, max(1, max_len // 3)), (1, 1)):
                items = probe(batch, width)
                want, got = model.encode(items), traced(items)  # want: without the table
                for w, g in zip(want, got, strict=True):
                    if w.shape != g.shape or (w - g).abs().max().item() > TOLERANCE:
                        raise ValueError(f"traced encoder differs from eager at [{batch}, "
                                         f"{width}]")
    except Exception as exc:  # any failure: serve eager, which is always correct
        logger.warning("serving the eager encoder: tracing failed (%s)", exc)
        return eager, False
    return traced, True
