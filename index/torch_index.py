"""Exact inner-product search with torch: one matmul and a top-k.

The fallback when faiss is absent, and the GPU path on hosts without faiss-gpu:
on CUDA a [B, d] x [d, V] matmul plus `topk` is as exact as `IndexFlatIP` and fast.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from streamrec.common.devices import from_numpy, resolve_device, to_numpy
from streamrec.index.base import ItemIndex, SearchResult

logger = logging.getLogger(__name__)


BLOCK = 128  # items per block of the two-stage top-k (`masked_topk`)


def masked_topk(queries: torch.Tensor, table_t: torch.Tensor, banned: torch.Tensor, k: int,
                chunk: int, num_rows: int, block: int,
                unavailable: torch.Tensor | None = None,
                rescore_queries: torch.Tensor | None = None,
                rescore_table: torch.Tensor | None = None, rescore_k: int = 0,
                packed: bool = False,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, rows) [B, k] of the best of the first `num_rows` rows of `table_t`
    [d, nb * block] per query, without row 0 (padding), each query's `banned` rows
    [B, n] (0 pads them) and the rows in `unavailable` [u] (for every query). Exact.
    `packed`: `table_t` is that table as `pack_table` made it.

    Queries go in chunks so each chunk's scores stay in cache; each chunk's top k is
    `chunk_topk`'s. Served scripted (`scripted_masked_topk`).

    With `rescore_table` ([V + 1, d] float32) and `rescore_queries` ([B, d] float32),
    the k found are candidates: each is scored again in float32 and the best
    `rescore_k` of them returned ([B, rescore_k]). `queries` and `table_t` are then
    16-bit, whose matmul is several times faster where the CPU has bfloat16 units.
    """
    out_k = rescore_k if rescore_table is not None else k
    values: list[torch.Tensor] = [queries.new_empty((0, out_k), dtype=torch.float32)]
    rows: list[torch.Tensor] = [torch.empty((0, out_k), dtype=torch.long,
                                            device=queries.device)]
    for start in range(0, queries.shape[0], chunk):
        exact_queries = rescore_queries
        if exact_queries is not None:
            exact_queries = exact_queries[start:start + chunk]
        part = queries[start:start + chunk]
        scores = packed_scores(part, table_t) if packed else part @ table_t
        found_values, found = chunk_topk(scores, banned[start:start + chunk], k, num_rows,
                                         block, unavailable, exact_queries, rescore_table,
                                         rescore_k)
        values.append(found_values)
        rows.append(found)
    return torch.cat(values), torch.cat(rows)


def chunk_topk(scores: torch.Tensor, banned: torch.Tensor, k: int, num_rows: int, block: int,
               unavailable: torch.Tensor | None = None,
               rescore_queries: torch.Tensor | None = None,
               rescore_table: torch.Tensor | None = None, rescore_k: int = 0,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, rows) [c, k] of one chunk's `scores` [c, nb * block] (any float type),
    masked as `masked_topk` says; with `rescore_table`, the best `rescore_k` of the k
    candidates scored again in float32 against `rescore_queries` [c, d].

    Two stages, because a full `topk` over V scores costs as much as the matmul that
    made them: each block of `block` items gets its maximum (a cheap reduction), the k
    blocks with the highest maxima are kept, and the top k of their k x block items is
    the answer. It is exact: an item outside those blocks has k items (their maxima)
    scoring at least as high.
    """
    # float32 whatever the matmul's type: reductions and top-k run slower on 16-bit
    # values than a conversion costs
    scores = scores.float()
    scores[:, 0] = -math.inf  # padding row, and the pads of `banned` mapped to it
    scores[:, num_rows:] = -math.inf  # the table's padding up to whole blocks
    if banned.shape[1] > 0:
        scores.scatter_(1, banned, -math.inf)
    if unavailable is not None:
        scores.index_fill_(1, unavailable, -math.inf)
    c = scores.shape[0]
    blocks = scores.view(c, -1, block)  # [c, nb, block]
    kb = min(k, blocks.shape[1])
    best = torch.topk(blocks.amax(dim=2), kb, dim=1).indices  # [c, kb]
    candidates = torch.gather(blocks, 1, best.unsqueeze(2).expand(c, kb, block))
    top = torch.topk(candidates.reshape(c, kb * block), k, dim=1)
    block_of = torch.gather(best, 1, torch.div(top.indices, block, rounding_mode="floor"))
    found = block_of * block + top.indices % block
    found_values = top.values
    if rescore_table is not None and rescore_queries is not None:
        # rows past the table (padding) come only with -inf: fewer than k allowed
        vectors = rescore_table[found.clamp(max=num_rows - 1)]  # [c, k, d]
        exact = torch.bmm(vectors, rescore_queries.unsqueeze(2))
        exact = torch.where(torch.isfinite(found_values), exact.squeeze(2), -math.inf)
        best_exact = torch.topk(exact, rescore_k, dim=1)
        found = torch.gather(found, 1, best_exact.indices)
        found_values = best_exact.values
    return found_values, found


@functools.cache
def scripted_masked_topk() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`masked_topk` as TorchScript: the chunk loop runs in C++ without taking the GIL
    back per operator, which matters while the worker's Kafka loop runs Python on
    another thread (encoder/compiled.py says the same of the encoder). TorchScript is
    deprecated in recent torch but still the one way to do this without a compiler
    toolchain; where it fails, the eager function serves (same results)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.script is deprecated"
            return torch.jit.script(masked_topk)
    except Exception as exc:
        logger.warning("exact torch search runs eager: scripting failed (%s)", exc)
        return masked_topk


def packed_scores(queries: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """queries [c, d] x the table `pack_table` made -> scores [c, P], in the queries' type.
    (The empty list is typed for TorchScript: the op's argument is `Scalar?[]`.)"""
    scalars = torch.jit.annotate(list[int | float | complex | None], [])
    return torch.ops.mkldnn._linear_pointwise(queries, packed, None, "none", scalars, "")


def pack_table(table_t: torch.Tensor, chunk: int) -> torch.Tensor | None:
    """The bfloat16 scoring table `table_t` [d, P] in oneDNN's own layout for its
    matmul, or None where this torch or device cannot (then the plain matmul serves).

    torch's matmul reorders its right-hand matrix into that layout on every call, which
    for an item table is the whole table per chunk of queries. Measured (2026-12-06,
    Intel Xeon with AMX, 1 thread, the games model's 23,715 items, queries encoded from
    1-50 item histories, two runs): the search 1.11-1.13x faster at batches of 8-32
    users, 1.19-1.21x at 64 and 1.30-1.37x at 256-1,024, the same rows for every query.
    The ops are oneDNN's in torch (Inductor's, private); the packed product is checked
    against the plain one once, and any failure falls back.
    """
    if table_t.device.type != "cpu" or table_t.dtype != torch.bfloat16:
        return None
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return None
        packed = torch.ops.mkldnn._reorder_linear_weight(table_t.T.contiguous(), chunk)
        probe = torch.randn(3, table_t.shape[0], generator=torch.Generator().manual_seed(0))
        probe = probe.to(table_t.dtype)
        if not torch.allclose(packed_scores(probe, packed).float(), (probe @ table_t).float(),
                              rtol=1e-2, atol=1e-2):
            logger.warning("the packed item table scores differently from the plain "
                           "matmul: the plain one serves")
            return None
    except (RuntimeError, AttributeError, TypeError) as exc:
        logger.info("the item table is not packed (%s): the plain matmul serves", exc)
        return None
    return packed


SCORE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                "float16": torch.float16}


def rescore_candidates(k: int) -> int:
    """Candidates per query that 16-bit scores pick for float32 rescoring when k are
    asked for. On the games model's 4,096 real queries (2026-12-04, bfloat16 scores),
    16 for k = 10 returned the float32 top 10 exactly for every query, 12 missed
    0.01% of them and 10 (no margin) 1.1%."""
    return k + max(6, k // 2)


class TorchIndex(ItemIndex):
    """Item table held as a torch tensor on `device` (cuda when available under auto).

    `score_dtype` bfloat16 or float16 keeps the table, the queries and the scores in
    16 bits: on CPUs with AMX or AVX-512 BF16 a several times faster matmul, at the
    price of rounding the scores (ties and swaps near the cut; `bench compress`
    measures what that costs in NDCG). `rescore` takes that price back: the 16-bit
    scores only pick `rescore_candidates(k)` items per query, which are scored again
    in float32 from the float32 table kept beside the 16-bit one (6 bytes per item and
    dimension, where float32 exact search keeps both tables in float32: 8). The
    result is approximate in principle (an item of the float32 top k
    that rounding pushed below the candidates is lost), so its recall is measured
    at load like any approximate index's.
    """

    def __init__(self, embeddings: np.ndarray, device: str = "auto",
                 score_dtype: str = "float32", rescore: bool = False) -> None:
        super().__init__(embeddings)
        if score_dtype not in SCORE_DTYPES:
            raise ValueError(f"score_dtype must be one of {', '.join(SCORE_DTYPES)}, got "
                             f"{score_dtype!r}")
        if rescore and score_dtype == "float32":
            raise ValueError("rescore needs 16-bit scores (score_dtype bfloat16 or float16)")
        self.rescore = rescore
        self.approximate = rescore
        self.device = resolve_device(device)
        self.dtype = SCORE_DTYPES[score_dtype]
        table = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
        self._table = table.to(self.device)  # [V + 1, d]
        # [d, nb * BLOCK]: the matmul's layout, zero-padded to whole blocks of the top-k
        padded = -(-self.num_rows // BLOCK) * BLOCK
        table_t = torch.zeros(self.dim, padded, device=self.device, dtype=self.dtype)
        table_t[:, : self.num_rows] = self._table.T.to(self.dtype)
        # Queries per scoring chunk: on a CPU, [chunk, V + 1] float32 scores of about
        # 4 MiB stay in cache; a GPU takes the whole batch at once.
        cpu_chunk = max(1, min(4096, (1 << 20) // self.num_rows))
        self.chunk = cpu_chunk if self.device.type == "cpu" else 1 << 16
        # The table the matmul scores: on a CPU in bfloat16, in the matmul's own layout
        # where oneDNN can (`pack_table`; the plain one is then not kept)
        packed = pack_table(table_t, self.chunk)
        self.packed = packed is not None
        self._scoring = packed if packed is not None else table_t
        self.name = f"torch-{self.device.type}" + (
            "" if score_dtype == "float32" else f"-{score_dtype}") + (
            "-rescored" if rescore else "")
        logger.info("built %s index: %d rows x %d dims%s", self.name, self.num_rows, self.dim,
                    ", table packed for oneDNN" if self.packed else "")

    def item_bytes(self) -> float:
        """The float32 table (padding search, rescoring) and the scoring table beside it."""
        return float((self._table.element_size() + self._scoring.element_size()) * self.dim)

    def _native_unavailable(self, rows: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """The rows as a tensor on the index's device, filled with -inf in each chunk's
        scores (`masked_topk`): a write per row and query beside the d multiply-adds per
        item and query of the matmul. Measured (2026-12-03, the 2-core box, 1 thread,
        1M items x 64 dims, 256 queries with 50-item histories): 54 queries/s with
        nothing retired, 53 with 1,000 and 55 with 100,000 retired (noise); building it
        (`set_unavailable`) 1.9 ms for 100,000 rows."""
        return torch.as_tensor(rows, device=self.device)

    @torch.inference_mode()
    def _masked_search(self, queries: np.ndarray, k: int, excl: np.ndarray) -> SearchResult:
        """Score every item, set padding, excluded and unavailable rows to -inf, take
        the top-k."""
        k_eff = min(k, self.num_rows - 1)
        q_exact = from_numpy(queries, self.device)
        q_all = q_exact if q_exact.dtype == self.dtype else q_exact.to(self.dtype)
        banned = from_numpy(np.where(excl < 0, 0, excl), self.device)
        candidates = min(rescore_candidates(k_eff), self.num_rows - 1) if self.rescore else k_eff
        exact = (q_exact, self._table, k_eff) if self.rescore else (None, None, 0)
        top_scores, top_rows = scripted_masked_topk()(
            q_all, self._scoring, banned, candidates, self.chunk, self.num_rows, BLOCK,
            self.unavailable.native, *exact, self.packed)
        out_rows = to_numpy(top_rows)
        out_scores = to_numpy(top_scores)
        gone = ~np.isfinite(out_scores)  # fewer than k items left after the exclusions
        out_rows[gone] = -1
        if k_eff < k:
            out_rows = np.pad(out_rows, ((0, 0), (0, k - k_eff)), constant_values=-1)
            out_scores = np.pad(out_scores, ((0, 0), (0, k - k_eff)),
                                constant_values=-np.inf)
        return SearchResult(rows=out_rows, scores=out_scores)

    @torch.inference_mode()
    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.as_tensor(queries, device=self.device)  # [B, d]
        scores = q @ self._table.T  # [B, V + 1]
        scores[:, 0] = -torch.inf  # padding row is never a candidate
        top = torch.topk(scores, k=min(n, self.num_rows - 1), dim=1)
        return top.indices.cpu().numpy().astype(np.int64), top.values.float().cpu().numpy()
