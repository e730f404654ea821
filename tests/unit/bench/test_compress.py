"""The levers of `bench compress`: each changes what it says and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.bench.compress import (
    IndexScorer,
    bf16_encoder,
    drop_block,
    int8_encoder,
    magnitude_pruned,
)
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec
from streamrec.index.torch_index import TorchIndex


@pytest.fixture
def model() -> SASRec:
    torch.manual_seed(0)
    return SASRec(ModelConfig(num_items=40, max_len=8, hidden=16, blocks=3, heads=2,
                              dropout=0.0)).eval()


def histories() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    items = torch.randint(0, 41, (6, 8), generator=gen)
    items[:, -1] = torch.randint(1, 41, (6,), generator=gen)
    return items


def test_dropping_a_block_is_the_model_without_it(model: SASRec) -> None:
    pruned = drop_block(model, 1)
    assert pruned.config.blocks == 2
    assert len(pruned.blocks) == 2
    for kept, original in ((0, 0), (1, 2)):  # block 2 moved up to 1, weights unchanged
        for a, b in zip(pruned.blocks[kept].parameters(), model.blocks[original].parameters(),
                        strict=True):
            assert torch.equal(a, b)
    # the same computation by hand: the model with block 1 skipped
    skipped = SASRec(model.config).eval()
    skipped.load_state_dict(model.state_dict())
    skipped.blocks = torch.nn.ModuleList([skipped.blocks[0], skipped.blocks[2]])
    with torch.inference_mode():
        assert torch.allclose(pruned.encode(histories())[0], skipped.encode(histories())[0])
        assert not torch.allclose(pruned.encode(histories())[0], model.encode(histories())[0])


def test_magnitude_pruning_zeroes_half_of_each_feed_forward_layer_only(model: SASRec) -> None:
    pruned = magnitude_pruned(model, 0.5)
    original = dict(model.named_parameters())
    assert set(dict(pruned.named_parameters())) == set(original)
    for name, after in pruned.named_parameters():
        before = original[name]
        if ".ffn." in f".{name}." and name.endswith("weight"):
            assert (after == 0).sum().item() == after.numel() // 2
            kept = after != 0
            assert before.abs()[kept].min() >= before.abs()[~kept].max()
        else:
            assert torch.equal(after, before)


def test_quantized_encoders_stay_close_to_float32(model: SASRec) -> None:
    with torch.inference_mode():
        want = model.encode(histories())[0]
        for variant in (bf16_encoder(model), int8_encoder(model)):
            got = variant.encode(histories())[0].float()
            assert got.shape == want.shape
            assert 0 < (got - want).abs().max().item() < 0.1 * want.abs().max().item()
    assert next(model.parameters()).dtype == torch.float32  # the original is untouched


def test_index_scorer_ranks_only_the_index_candidates(model: SASRec) -> None:
    table = model.item_embeddings().detach().float().numpy()
    scorer = IndexScorer(model, TorchIndex(table, device="cpu"), max_len=4,
                         num_rows=table.shape[0])
    scores = scorer.score(histories().numpy())
    finite = np.isfinite(scores)
    assert (finite.sum(axis=1) == 10 + 4).all()  # k + max_len candidates, the rest -inf
    assert not finite[:, 0].any()  # padding row never scored
    with torch.inference_mode():
        full = (model.encode(histories()[:, -4:])[0] @ model.item_embeddings().T).numpy()
    full[:, 0] = -np.inf
    best = np.argsort(-full, axis=1)[:, :14]
    assert np.array_equal(np.sort(best, axis=1), np.sort(np.argsort(-scores, axis=1)[:, :14],
                                                          axis=1))


def test_the_quality_section_replaces_its_older_self_before_the_tuning_runs(
        tmp_path: Path) -> None:
    from streamrec.bench.compress_quality import HEADING, with_compression_section

    doc = {"date": "d", "machine": "m", "users": 3, "rows": [
        {"lever": "baseline", "variant": "float32 exact", "hr": 0.1, "ndcg": 0.05,
         "loss_pct": 0.0, "note": ""}]}
    path = tmp_path / "q.json"
    text = "# Q\n\n## Results\nr\n\n## How the configuration was chosen\nt\n"
    assert with_compression_section(text, path) == text  # nothing measured: unchanged
    path.write_text(json.dumps(doc))
    once = with_compression_section(text, path)
    assert once.index(HEADING) < once.index("## How the configuration was chosen")
    assert "| baseline | float32 exact | 0.1000 | 0.0500 | +0.0% |  |" in once
    doc["rows"][0]["ndcg"] = 0.06
    path.write_text(json.dumps(doc))
    twice = with_compression_section(once, path)
    assert twice.count(HEADING) == 1
    assert "0.0600" in twice
    assert "0.0500" not in twice
    assert twice.startswith("# Q\n\n## Results\nr\n")
    assert twice.endswith("chosen\nt\n")


def test_only_keeps_the_named_variants_and_the_baseline_without_pruning(model: SASRec) -> None:
    """`--only rescoring` must not choose a block to drop (it reads the data: None here)."""
    from streamrec.bench.compress import CompressOptions, variants

    names = [v.name for v in variants(model, None, CompressOptions(only=("rescoring",)))]
    assert names == ["float32 exact", "table bf16 candidates, fp32 rescoring",
                     "table fp16 candidates, fp32 rescoring",
                     "encoder bf16 + table bf16 candidates, fp32 rescoring"]
