"""A hot swap loads the next version's vocabulary on top of the serving one's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from streamrec.encoder import vocab as vocab_module
from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker import heap
from streamrec.worker.config import WorkerConfig
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.state.durable import DurableHistories
from streamrec.worker.state.items import ItemTable
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


def test_a_version_with_the_serving_vocabulary_file_serves_that_vocabulary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = ["a", "b", "c"]
    serving = tiny_recommender(tmp_path / "v1", ItemVocab(ids))
    same = tiny_recommender(tmp_path / "v2", ItemVocab(ids)).checkpoint.path
    grown = tiny_recommender(tmp_path / "v3", ItemVocab([*ids, "d"])).checkpoint.path
    swap = ModelSwap(WorkerConfig(model_dir=tmp_path / "v1", index="torch"), serving,
                     WorkerMetrics(), "confluent")
    compared = []
    monkeypatch.setattr(vocab_module, "_begins_with",
                        lambda a, b: compared.append(len(b)) or list(a[:len(b)]) == list(b))
    parsed, read = [], ItemVocab.from_json
    monkeypatch.setattr(ItemVocab, "from_json",
                        lambda *args: parsed.append(1) or read(*args))
    loaded = swap._load(same).checkpoint.vocab
    assert loaded is serving.checkpoint.vocab
    assert (parsed, compared) == ([], [])  # neither read nor compared with itself
    table = ItemTable(serving.checkpoint.vocab)
    assert table.prepare(loaded).table is table  # the serving table serves on
    assert compared == []
    grown_vocab = swap._load(grown).checkpoint.vocab
    assert grown_vocab is not serving.checkpoint.vocab
    assert (len(parsed), compared) == (1, [3])  # compared once, when it was read
    assert table.prepare(grown_vocab).table.vocab is grown_vocab
    assert compared == [3]  # not again: it was built on the serving vocabulary
    assert grown_vocab.rows(["d", "a"]).tolist() == [4, 1]



def test_close_ends_the_loader_and_release_threads(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    serving = tiny_recommender(repo / "v1", ItemVocab(["a", "b"]))
    (repo / "CURRENT").write_text("v1\n", encoding="utf-8")
    swap = ModelSwap(WorkerConfig(model_dir=repo, index="torch"), serving, WorkerMetrics(),
                     "confluent")
    threads = [swap.watcher._loader.thread, swap._releaser.thread]  # type: ignore[union-attr]
    assert all(t.is_alive() for t in threads)
    swap.close()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)


def test_a_swap_to_the_serving_vocabulary_keeps_the_item_table_and_releases_the_old_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = ["a", "b", "c"]
    repo = tmp_path / "models"
    serving = tiny_recommender(repo / "v1", ItemVocab(ids))
    retrained = tiny_recommender(repo / "v2", ItemVocab(ids)).checkpoint.path
    (repo / "CURRENT").write_text("v1\n", encoding="utf-8")
    state = DurableHistories(4, serving.checkpoint.vocab, bootstrap="unused:9092",
                             group_id="g", security=KafkaSecurity())
    state.apply(0, ["u", "u"], ["a", "new"], np.array([1, 2]), np.array([0, 1]))
    table = state.items
    swap = ModelSwap(WorkerConfig(model_dir=repo, index="torch"), serving, WorkerMetrics(),
                     "confluent", state=state)
    released: list[tuple[object, ...]] = []
    monkeypatch.setattr(heap, "release_later",
                        lambda *objects, **kwargs: released.append(objects))
    swap._next = ("v2", swap._load(retrained))
    stage = SimpleNamespace(recommender=serving)
    new = swap.swap(state, stage)  # type: ignore[arg-type]
    assert stage.recommender is new
    assert new is not serving
    assert state.items is table  # served on: nothing renumbered, nothing rebuilt
    items, _ = state.rows([(0, "u")])
    assert table.external(items[0, -2:]) == ["a", "new"]
    assert released == [(serving,)]  # the old model off the loop; the table stays
    swap.close()
