"""A hot swap loads the next version's vocabulary on top of the serving one's."""

from __future__ import annotations

from pathlib import Path

from streamrec.encoder.vocab import ItemVocab
from streamrec.worker.config import WorkerConfig
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.swap import ModelSwap
from tests.unit.worker.helpers import tiny_recommender


def test_a_version_that_extends_the_serving_vocabulary_copies_its_lookup(tmp_path: Path) -> None:
    serving = tiny_recommender(tmp_path / "v1", ItemVocab(["a", "b", "c"]))
    grown = tiny_recommender(tmp_path / "v2", ItemVocab(["a", "b", "c", "d"])).checkpoint.path
    other = tiny_recommender(tmp_path / "v3", ItemVocab(["d", "a", "b", "c"])).checkpoint.path
    swap = ModelSwap(WorkerConfig(model_dir=tmp_path / "v1", index="torch"), serving,
                     WorkerMetrics(), "confluent")
    loaded = swap._load(grown).checkpoint.vocab
    assert loaded.reused == 3
    assert loaded.rows(["a", "d"]).tolist() == [1, 4]
    assert swap._load(other).checkpoint.vocab.reused == 0
