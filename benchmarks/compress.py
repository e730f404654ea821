"""`streamrec bench compress`: quantization and pruning of the games model, measured.

Every variant is the trained games model with one lever pulled, against float32
exact search in the same run:

- the item table: scores in bfloat16 or float16 (the torch index, `score_dtype`),
  alone or picking candidates that are re-scored in float32 (`--index torch-bf16`),
  FAISS SQ8 and PQ codes searched exhaustively (`--index sq8 | pq`), and IVF over
  the games catalogue itself;
- the encoder: bfloat16 weights and activations, int8 dynamic quantization of its
  linear layers (torch.ao's `quantize_dynamic`, deprecated in favour of torchao,
  which is not a dependency);
- pruning: one of the two blocks dropped (the better one, chosen on the validation
  split) with and without a short fine-tune; half of the feed-forward weights
  zeroed by magnitude. The games model has one attention head: no head to prune.

For each: model-stage users/s (`Recommender.encode` + `search`, history excluded,
as the worker runs it) at 1 and 2 threads and batches 64 / 256 / 1024, variants
interleaved round by round and the best round kept; the memory of the encoder and
of the item index; full-ranking HR@10 / NDCG@10 on the games test split through the
variant's own search (the index's top 10 + L candidates scored, everything else
unranked; history excluded by the evaluator, as `streamrec evaluate` does).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamrec.bench import compress_quality
from streamrec.bench.contenders import GAMES, bench_model, load_stream
from streamrec.bench.model import rate, sample_histories, set_threads
from streamrec.bench.report import ROOT, append_section, machine, table

if TYPE_CHECKING:  # torch is imported where it runs: the CLI's parser reads CompressOptions
    from torch import nn

logger = logging.getLogger(__name__)

KS = (10,)


@dataclass(frozen=True)
class CompressOptions:
    """What `bench compress` measures."""

    model: Path | None = None
    batches: tuple[int, ...] = (64, 256, 1024)
    threads: tuple[int, ...] = (1, 2)
    rounds: int = 2
    seconds: float = 1.0  # per speed measurement
    finetune_epochs: int = 3
    only: tuple[str, ...] = ()  # variants whose name contains one of these (+ the baseline)
    workdir: Path = ROOT / ".cache" / "bench"


@dataclass
class Variant:
    """One lever pulled: the encoder to serve and how its item index is built."""

    name: str
    lever: str
    model: nn.Module
    index: Callable[[np.ndarray], object]  # float32 table [V + 1, d] -> ItemIndex
    note: str = ""


class IndexScorer:
    """A variant as an evaluator `Scorer`: its index's top (10 + L) items scored, every
    other item -inf (ranked after them), so HR@10 / NDCG@10 are those of its search."""

    def __init__(self, model: nn.Module, index: object, max_len: int, num_rows: int) -> None:
        from streamrec.encoder.evaluate import ModelScorer

        self.encoder = ModelScorer(model, max_len=max_len)
        self.index, self.num_rows, self.max_len = index, num_rows, max_len

    def score(self, histories: np.ndarray) -> np.ndarray:
        """float32 [B, V + 1]: -inf but for the index's candidates."""
        queries = self.encoder.queries(histories)
        n = min(KS[-1] + self.max_len, self.num_rows - 1)
        found = self.index.search(queries, n)  # type: ignore[attr-defined]
        out = np.full((len(histories), self.num_rows), -np.inf, dtype=np.float32)
        ok = found.rows > 0
        out[np.nonzero(ok)[0], found.rows[ok]] = found.scores[ok]
        return out


def encoder_bytes(model: nn.Module) -> int:
    """Serialized size of the encoder's weights without the item table (which the
    index columns count)."""
    import torch

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("item_emb")}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def bf16_encoder(model: nn.Module) -> nn.Module:
    """Weights and activations in bfloat16 (AMX / AVX-512 BF16 matmuls where present)."""
    import torch

    return copy.deepcopy(model).to(torch.bfloat16).eval()


def int8_encoder(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every linear layer but the attention's input
    projection (`qkv`: the last block slices its weight, which a packed int8 layer
    does not expose)."""
    import torch
    from torch import nn
    from torch.ao.quantization import quantize_dynamic

    names = {n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and not n.endswith("qkv")}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice
        return quantize_dynamic(copy.deepcopy(model).eval(), names, dtype=torch.qint8)


def drop_block(model: nn.Module, block: int) -> nn.Module:
    """The model with block `block` removed (the others keep their weights)."""
    from streamrec.encoder.model import SASRec

    config = dataclasses.replace(model.config, blocks=model.config.blocks - 1)
    pruned = SASRec(config)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            if int(i) == block:
                continue
            key = f"blocks.{int(i) - (int(i) > block)}.{rest}"
        state[key] = value
    pruned.load_state_dict(state)
    return pruned.eval()


def magnitude_pruned(model: nn.Module, amount: float = 0.5) -> nn.Module:
    """The feed-forward layers' smallest `amount` of weights (by |w|) set to zero."""
    from torch import nn
    from torch.nn.utils import prune

    pruned = copy.deepcopy(model).eval()
    for name, module in pruned.named_modules():
        if isinstance(module, nn.Linear) and ".ffn." in f".{name}.":
            prune.l1_unstructured(module, "weight", amount=amount)
            prune.remove(module, "weight")
    return pruned


def fine_tune(model: nn.Module, data: object, epochs: int) -> nn.Module:
    """`epochs` more epochs of the games preset's training from `model` (a pruned
    model recovers what it lost), best validation epoch kept."""
    from streamrec.encoder.config import preset
    from streamrec.encoder.train import train_model
    from streamrec.encoder.warmstart import WarmStart

    _, tc = preset("games", data.num_items, len(data.sequences),  # type: ignore[attr-defined]
                   sum(len(s) for s in data.sequences))  # type: ignore[attr-defined]
    # a third of the peak rate, decayed to 0: a nudge, not a new training run
    tc = dataclasses.replace(tc, epochs=epochs, max_minutes=0, warmup_steps=0, lr=tc.lr / 3)
    start = WarmStart(model=model, from_version="pruned", old_items=model.config.num_items,
                      new_items=0, from_old_neighbours=0, from_new_neighbours=0, random=0)
    return train_model(data, model.config, tc, progress=False, initial=start).model.eval()


def variants(model: nn.Module, data: object, opts: CompressOptions) -> list[Variant]:
    """Every lever on the trained `model`; the block to drop is chosen on validation."""
    from streamrec.index.ann import AnnIndex
    from streamrec.index.params import AnnParams
    from streamrec.index.torch_index import TorchIndex

    def exact(dtype: str = "float32", rescore: bool = False) -> Callable[[np.ndarray], object]:
        return lambda table: TorchIndex(table, device="cpu", score_dtype=dtype, rescore=rescore)

    def wanted(name: str) -> bool:
        return not opts.only or any(part in name for part in opts.only)

    def faiss_kind(kind: str) -> Callable[[np.ndarray], object]:
        return lambda table: AnnIndex(table, kind, device="cpu")

    out = [
        Variant("float32 exact", "baseline", model, exact()),
        Variant("table bf16 scores", "item table", model, exact("bfloat16")),
        Variant("table fp16 scores", "item table", model, exact("float16")),
        Variant("table bf16 candidates, fp32 rescoring", "item table", model,
                exact("bfloat16", rescore=True), "--index torch-bf16"),
        Variant("table fp16 candidates, fp32 rescoring", "item table", model,
                exact("float16", rescore=True)),
        Variant("table SQ8 (exhaustive)", "item table", model, faiss_kind("sq8")),
        Variant("table PQ 16x8 (exhaustive)", "item table", model, faiss_kind("pq")),
        Variant("IVF-SQ8 (auto nlist / nprobe)", "item table", model, faiss_kind("ivf-sq8")),
        Variant("IVF-Flat (auto nlist / nprobe)", "item table", model, faiss_kind("ivf")),
        Variant("IVF-Flat, nprobe 48", "item table", model,
                lambda table: AnnIndex(table, "ivf", AnnParams(nprobe=48), device="cpu")),
        Variant("encoder bf16", "encoder", bf16_encoder(model), exact(),
                "weights and activations bfloat16; search float32"),
        Variant("encoder int8 dynamic", "encoder", int8_encoder(model), exact(),
                "torch.ao quantize_dynamic (deprecated; torchao not installed); qkv kept"),
    ]
    if wanted("block"):  # choosing the block and the fine-tune take minutes
        dropped = best_dropped_block(model, data)
        out.append(Variant(f"block {dropped} dropped", "pruning", drop_block(model, dropped),
                           exact(), "no fine-tune"))
        print(f"[bench] fine-tuning the model without block {dropped} for "
              f"{opts.finetune_epochs} epochs", flush=True)
        tuned = fine_tune(drop_block(model, dropped), data, opts.finetune_epochs)
        out.append(Variant(f"block {dropped} dropped + fine-tune", "pruning", tuned, exact(),
                           f"{opts.finetune_epochs} epochs at a third of the preset's rate"))
    out.append(Variant("FFN 50% magnitude-pruned", "pruning", magnitude_pruned(model),
                       exact(), "unstructured zeros: dense kernels, no fine-tune"))
    out.append(Variant("encoder bf16 + table bf16", "combined", bf16_encoder(model),
                       exact("bfloat16")))
    out.append(Variant("encoder bf16 + table bf16 candidates, fp32 rescoring", "combined",
                       bf16_encoder(model), exact("bfloat16", rescore=True)))
    return [v for i, v in enumerate(out) if i == 0 or wanted(v.name)]


def best_dropped_block(model: nn.Module, data: object) -> int:
    """The block whose removal costs least validation NDCG@10."""
    from streamrec.encoder.evaluate import ModelScorer, evaluate_protocols
    from streamrec.encoder.split import leave_one_out

    cases = leave_one_out(data).validation  # type: ignore[arg-type]
    scores = {}
    for block in range(model.config.blocks):
        scorer = ModelScorer(drop_block(model, block), max_len=model.config.max_len)
        metrics = evaluate_protocols(scorer, cases, protocols=("full",), ks=KS)["full"]
        scores[block] = metrics.ndcg[10]
        print(f"[bench] without block {block}: validation NDCG@10 {metrics.ndcg[10]:.4f}",
              flush=True)
    return max(scores, key=scores.__getitem__)


def quality(variant: Variant, index: object, cases: object, max_len: int,
            num_rows: int) -> tuple[float, float]:
    """(HR@10, NDCG@10) on `cases`, full ranking through the variant's search."""
    from streamrec.encoder.evaluate import evaluate_protocols

    scorer = IndexScorer(variant.model, index, max_len, num_rows)
    metrics = evaluate_protocols(scorer, cases, protocols=("full",), ks=KS,  # type: ignore[arg-type]
                                 max_len=max_len)["full"]
    return metrics.hr[10], metrics.ndcg[10]


def run(opts: CompressOptions) -> list[list[str]]:
    """Every variant's speed, memory and quality; appends the report section."""
    import torch

    from streamrec.encoder.checkpoint import load_checkpoint
    from streamrec.encoder.data import load_interactions
    from streamrec.encoder.split import leave_one_out
    from streamrec.worker.recommend import Recommender

    if not GAMES.is_file():
        raise SystemExit(f"bench compress measures the games model: {GAMES} is missing")
    path = bench_model(opts.model, opts.workdir)
    ckpt = load_checkpoint(path, device="cpu")
    data = load_interactions(GAMES, "sasrec", vocab=ckpt.vocab)
    test = leave_one_out(data).test
    table = ckpt.model.item_embeddings().detach().float().numpy()
    set_threads(max(opts.threads))
    chosen = variants(ckpt.model, data, opts)
    served = []
    for v in chosen:
        index = v.index(table)
        rec = Recommender(dataclasses.replace(ckpt, model=v.model), index,  # type: ignore[arg-type]
                          torch.device("cpu"))
        hr, ndcg = quality(v, index, test, ckpt.config.max_len, table.shape[0])
        print(f"[bench] {v.name}: test HR@10 {hr:.4f}, NDCG@10 {ndcg:.4f}", flush=True)
        served.append((v, rec, hr, ndcg))
    stream = load_stream(10**9, 30_000)
    histories, lengths = sample_histories(stream, served[0][1], max(opts.batches))
    base = served[0][1].encode(histories, lengths).queries
    drift = {v.name: float(np.abs(r.encode(histories, lengths).queries - base).max())
             for v, r, _, _ in served}
    speed: dict[tuple[str, int, int], float] = {}
    for round_ in range(opts.rounds):  # variants interleaved; best round kept
        for threads in opts.threads:
            set_threads(threads)
            for batch in opts.batches:
                h, n = histories[:batch], lengths[:batch]
                for v, r, _, _ in served:
                    got = rate(lambda h=h, n=n, r=r: r.search(r.encode(h, n), h, 10), batch,
                               opts.seconds)
                    key = (v.name, threads, batch)
                    speed[key] = max(speed.get(key, 0.0), got)
            print(f"[bench] round {round_ + 1}, {threads} thread(s) done", flush=True)
    set_threads(os.cpu_count() or 1)
    rows = report_rows(served, speed, drift, opts)
    write_report(rows, opts)
    if opts.only:  # a partial run: QUALITY.md keeps the table of every lever
        print("[bench] --only: docs/QUALITY.md's table left as it is", flush=True)
        return rows
    base = served[0][3]
    compress_quality.save({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
        "users": len(test), "rows": [
            {"lever": v.lever, "variant": v.name, "hr": hr, "ndcg": ndcg,
             "loss_pct": 100 * (ndcg / base - 1), "note": v.note}
            for v, _, hr, ndcg in served]})
    return rows


def report_rows(served: list, speed: dict, drift: dict, opts: CompressOptions
                ) -> list[list[str]]:
    """One row per variant: quality and its loss, then users/s ratios to float32."""
    base_ndcg = served[0][3]
    rows = []
    for v, r, hr, ndcg in served:
        cells = [v.lever, v.name, f"{hr:.4f}", f"{ndcg:.4f}",
                 f"{100 * (ndcg / base_ndcg - 1):+.1f}%", f"{drift[v.name]:.3f}",
                 f"{encoder_bytes(v.model) / 1024:,.0f}",
                 f"{r.index.item_bytes():,.0f}"]
        for threads in opts.threads:
            for batch in opts.batches:
                got = speed[(v.name, threads, batch)]
                base = speed[(served[0][0].name, threads, batch)]
                cells.append(f"{got:,.0f} ({got / base:.2f}x)")
        cells.append(v.note)
        rows.append(cells)
    return rows


def write_report(rows: list[list[str]], opts: CompressOptions) -> None:
    """The dated section of docs/BENCHMARKS.md."""
    speed_cols = [f"{t} thr, batch {b} users/s" for t in opts.threads for b in opts.batches]
    body = "\n\n".join([
        f"Machine: {machine()}.",
        "The games model with one lever pulled (`benchmarks/compress.py`). Quality: "
        "full-ranking HR@10 / NDCG@10 on the games test split (30,901 users) through the "
        "variant's own search, loss against float32 exact. Speed: the model stage "
        "(encode + search, history excluded) in users/s on histories of the e2e stream, "
        f"variants interleaved, best of {opts.rounds} rounds, ratio to float32 exact in "
        "the same round layout. Memory: encoder weights without the item table "
        "(serialized), and the index's bytes per item. Query max |Δ|: the largest "
        "difference of the variant's query vectors from float32's on the speed histories.",
        table(["lever", "variant", "HR@10", "NDCG@10", "NDCG@10 vs fp32", "query max |Δ|",
               "encoder KiB",
               "index bytes/item", *speed_cols, "note"], rows),
    ])
    append_section("bench compress (quantization and pruning)", body)
