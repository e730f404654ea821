"""Which index backend serves, why, and that the name reported is the one chosen.

faiss is an optional extra (`streamrec[cpu]` / `streamrec[gpu]`), so the base
install must serve from the exact torch index. The worker reports the index as
`streamrec_model_info{index=...}` from `Recommender.index.name`: checked here with
faiss importable (this environment installs the cpu extra) and, in a subprocess,
with faiss made unimportable.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.encoder.checkpoint import save_checkpoint
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab
from streamrec.index import build, build_index
from streamrec.index.build import choose_backend
from streamrec.worker.recommend import Recommender

ROOT = Path(__file__).resolve().parents[3]
TABLE = np.random.default_rng(0).normal(size=(21, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    vocab = ItemVocab([f"i{n}" for n in range(1, 21)])
    model = SASRec(ModelConfig(num_items=20, max_len=4, hidden=8, blocks=1, heads=1))
    popularity = np.arange(21, dtype=np.float32)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "m", model, vocab, popularity,
                           meta={})


@pytest.mark.parametrize(("backend", "on_cuda", "gpus", "error", "kind", "why"), [
    ("auto", False, 0, None, "torch", "encoder runs on the CPU"),
    ("auto", False, 0, "No module named 'faiss'", "torch", "faiss is not importable"),
    ("auto", True, 1, None, "faiss", "faiss sees 1 GPU"),
    ("auto", True, 0, None, "torch", "no GPU support"),
    ("auto", True, 0, "No module named 'faiss'", "torch", "streamrec[gpu]"),
    ("torch", False, 0, None, "torch", "asked for"),
    ("faiss", True, 0, None, "faiss", "asked for"),
])
def test_choice_and_reason(backend: build.Backend, on_cuda: bool, gpus: int, error: str | None,
                           kind: str, why: str) -> None:
    chosen, reason = choose_backend(backend, on_cuda, gpus, error)
    assert chosen == kind
    assert why in reason


@pytest.mark.parametrize(("items", "on_cuda", "fast_bf16", "error", "kind"), [
    (23_715, False, True, None, "torch-bf16"),
    (23_715, False, True, "No module named 'faiss'", "torch-bf16"),  # needs no faiss
    (23_715, False, False, None, "torch"),  # no bfloat16 units: emulated, slower
    (5_000, False, True, None, "torch"),  # below AUTO_BF16_ITEMS
    (23_715, True, True, "No module named 'faiss'", "torch"),  # the GPU: not measured
    (200_000, False, True, None, "ivf-sq8"),
])
def test_auto_serves_bfloat16_candidates_on_a_cpu_with_bfloat16_units(
        items: int, on_cuda: bool, fast_bf16: bool, error: str | None, kind: str) -> None:
    chosen, reason = choose_backend("auto", on_cuda, 0, error, items=items,
                                    fast_bf16=fast_bf16)
    assert chosen == kind
    if kind == "torch-bf16":
        assert "re-scored in float32" in reason


def test_the_recommender_reports_the_backend_it_built(
    model_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec.index.build")
    assert build_index(TABLE, device="cpu").name == "torch-cpu"
    assert Recommender.load(model_dir, "cpu").index.name == "torch-cpu"
    assert "index backend torch-cpu: the encoder runs on the CPU" in caplog.text
    assert Recommender.load(model_dir, "cpu", backend="faiss").index.name == "faiss-cpu"
    assert "index backend faiss-cpu: --index faiss was asked for" in caplog.text


# Runs with `faiss` unimportable, as in a base install without the cpu/gpu extra.
NO_FAISS = """
import json, logging, sys
sys.modules["faiss"] = None
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import numpy as np
from streamrec.index import build_index
from streamrec.index.errors import IndexBuildError
from streamrec.worker.recommend import Recommender
table = np.random.default_rng(0).normal(size=(21, 8)).astype(np.float32)
out = {"auto": build_index(table, device="cpu").name,
       "recommender": Recommender.load(sys.argv[1], "cpu").index.name}
try:
    build_index(table, backend="faiss", device="cpu")
except IndexBuildError as exc:
    out["faiss_error"] = str(exc)
print(json.dumps(out))
"""


def test_without_faiss_the_recommender_reports_torch_and_says_why(model_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", NO_FAISS, str(model_dir)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["auto"] == "torch-cpu"
    assert out["recommender"] == "torch-cpu"
    assert "streamrec[cpu]" in out["faiss_error"]
    assert "index backend torch-cpu: faiss is not importable" in proc.stderr
    assert "streamrec[cpu]" in proc.stderr


def test_two_faiss_distributions_are_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(build.metadata, "packages_distributions",
                        lambda: {"faiss": ["faiss-gpu-cu12", "faiss-cpu"]})
    build.check_faiss_distributions.cache_clear()
    build.probe_faiss()
    build.probe_faiss()  # read once per process: the second probe neither reads nor warns
    assert caplog.text.count("several distributions install the faiss module (faiss-cpu, "
                             "faiss-gpu-cu12)") == 1
    build.check_faiss_distributions.cache_clear()


def test_faiss_is_an_extra_not_a_base_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if "faiss" in d]
    extras = project["optional-dependencies"]
    assert [d.split(">")[0] for d in extras["cpu"]] == ["faiss-cpu"]
    assert [d.split(">")[0] for d in extras["gpu"]] == ["faiss-gpu-cu12"]
    assert not [d for d in extras["dev"] if "faiss" in d]
    setup = (ROOT / "deploy" / "setup.sh").read_text(encoding="utf-8")
    assert '-e "$ROOT[cpu,dev]"' in setup  # README's two commands get the cpu extra
