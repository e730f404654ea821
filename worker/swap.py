"""The serving model and the next one: a repository's new version, loaded off the hot
path by `reload.ModelWatcher`, is swapped in between two batches.

The loop asks `poll()` on every turn; once a version is loaded (`due`), the loop
publishes the batch the model stage finished and calls `swap`, which translates the
histories in memory to the new vocabulary and hands the model stage the new model.
The loader thread has already built the new item table (`ItemTable.prepare`: a
million vocabulary lookups for a million-item model) and the retired items' rows
(`LiveCatalogue.prepare`), so the swap itself only maps the items that arrived or
changed since and renumbers the histories.
A version whose history length differs from the serving one's is refused at load:
the histories in memory are that wide. `report` puts what serves into
`streamrec_model_info`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from streamrec.common.handoff import Handoff
from streamrec.encoder import repository
from streamrec.encoder.errors import CheckpointError
from streamrec.worker import heap
from streamrec.worker.config import WorkerConfig
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.model_stage import ModelStage
from streamrec.worker.recommend import Recommender
from streamrec.worker.reload import ModelWatcher
from streamrec.worker.state.durable import DurableHistories
from streamrec.worker.state.items import PreparedTable

if TYPE_CHECKING:
    from streamrec.worker.catalogue import LiveCatalogue

logger = logging.getLogger(__name__)


class ModelSwap:
    """The model serving now, the version loaded to replace it, and their metrics."""

    def __init__(self, config: WorkerConfig, serving: Recommender, metrics: WorkerMetrics,
                 kafka_client: str, state: DurableHistories | None = None,
                 catalogue: LiveCatalogue | None = None) -> None:
        self.config = config
        self.serving = serving
        self.state = state  # its item table is prepared for a loaded version off the loop
        self.catalogue = catalogue  # and the retired items' rows in the loaded version
        # model version -> its item table, prepared on the loader thread (`_load`)
        self._prepared: dict[str, PreparedTable] = {}
        self.metrics = metrics
        self.kafka_client = kafka_client
        name = serving.checkpoint.path.name if repository.is_repository(config.model_dir) else None
        self.watcher = ModelWatcher(config.model_dir, name, self._load, config.model_check_s)
        self._next: tuple[str, Recommender] | None = None
        self._refusals_seen = 0  # model versions refused, as counted in the metrics
        # Frees a swapped-out model's objects; started only where a version can come
        self._releaser = Handoff("streamrec-release") if self.watcher.enabled else None

    @property
    def due(self) -> bool:
        """A new version is loaded and waits to be swapped in."""
        return self._next is not None

    def close(self) -> None:
        """End the loader and release threads once their work in hand is done (the
        worker stops; not waited for)."""
        self.watcher.close()
        if self._releaser is not None:
            self._releaser.close()

    def request(self) -> None:
        """Check the repository now (SIGHUP, POST /reload; signal-safe)."""
        self.watcher.request()

    def poll(self) -> None:
        """Take a loaded version, start a load when one is due, count refusals."""
        ready = self.watcher.poll()
        if ready is not None:
            self._next = ready
        elif self.watcher.refusals > self._refusals_seen:
            self.metrics.model_reloads.labels("refused").inc(
                self.watcher.refusals - self._refusals_seen)
            self._refusals_seen = self.watcher.refusals

    def swap(self, state: DurableHistories, stage: ModelStage) -> Recommender:
        """Serve the loaded version from the next batch on (no batch in the stage)."""
        if self._next is None:
            return self.serving
        version, new = self._next
        self._next = None
        start = time.perf_counter()
        old, old_serving, old_table = self.serving.model_version, self.serving, state.items
        state.change_vocab(new.checkpoint.vocab, self._prepared.pop(new.model_version, None))
        self.serving = new
        stage.recommender = new
        self.watcher.swapped(version)
        self.report()
        self.metrics.model_reloads.labels("ok").inc()
        heap.freeze_new("model swap")  # no full collection: it would hold the loop
        # The old model's objects, off this thread; its item table too, unless it serves on
        # (the new version has the serving vocabulary).
        olds = (old_serving,) if old_table is state.items else (old_serving, old_table)
        heap.release_later(*olds, on=self._releaser, keep=(new, state.items))
        took = time.perf_counter() - start  # the poll loop waited this long
        self.metrics.stage_seconds.labels("swap").observe(took)
        logger.info("now serving model %s (was %s): %d items; the swap held the loop %.0f ms",
                    new.model_version, old, len(new.checkpoint.vocab), took * 1000)
        return new

    def report(self) -> None:
        """`streamrec_model_info`: the serving model, its index, device and Kafka client."""
        serving = self.serving
        self.metrics.model_info.info({
            "version": serving.model_version,
            "items": str(len(serving.checkpoint.vocab)),
            "max_len": str(serving.max_len),
            "index": serving.index.name,
            "device": str(serving.device),
            "kafka_client": self.kafka_client,
        })
        recall = serving.index_recall
        self.metrics.index_recall.set(1.0 if recall is None else recall)

    def _load(self, path: Path) -> Recommender:
        """Load a new version (on the watcher's thread) and check it can replace the
        serving one: the histories in memory are `max_len` wide."""
        cfg = self.config
        new = Recommender.load(path, cfg.device, cfg.index, cfg.torch_threads, cfg.ann,
                               cfg.min_recall, vocab_base=self.serving.checkpoint.vocab)
        if new.max_len != self.serving.max_len:
            raise CheckpointError(f"{path}: history length {new.max_len} differs from the "
                                  f"serving model's {self.serving.max_len}; restart the "
                                  "workers to change it")
        if self.state is not None:
            self._prepared.clear()  # one loaded version waits at a time
            self._prepared[new.model_version] = self.state.items.prepare(new.checkpoint.vocab)
        if self.catalogue is not None:
            self.catalogue.prepare(new)
        return new
