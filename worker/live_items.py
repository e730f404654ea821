"""Items the serving model never saw, recommended from their content until it learns them.

An item that arrives on the items topic with features and is unknown to the serving
model gets a vector from the model's content tower (encoder/content.py) and joins
the model's side table (`Recommender.extra`, index/extra.py) between two batches: it
can be recommended from the next batch on, without a retrain. Its row is the
worker's item-table row for an unknown item (V+1, V+2, ...), the row the histories
hold once someone interacts with it, so a user is never recommended a live item
already in their history. A model that learned the item takes over at the next swap
(its learned vector is in the main index; the side table holds only what that model
does not know). A features update re-embeds only such items; a retire removes one.

Records are noted as the loop applies them (`note`, ~0.1 us) and embedded in one
batch between two batches (`apply_to`). A loaded model's vectors for the items live
at the time are computed on the loader thread (`prepare`), so a swap only looks
their rows up and embeds what changed since.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamrec.encoder.features import ItemFeatures
from streamrec.worker.item_records import ItemRecord
from streamrec.worker.recommend import Recommender
from streamrec.worker.state.items import ItemTable


class Records(Protocol):
    """What it reads of the catalogue (`catalogue.Catalogue`)."""

    def records(self) -> list[ItemRecord]: ...

    def get(self, item_id: str) -> ItemRecord | None: ...

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedLive:
    """A loaded model's vectors for the items live when `prepare` ran."""

    recommender: Recommender
    ids: list[str]
    vectors: np.ndarray  # [n, d]
    start: int  # the first noted record it does not reflect


def wanted(record: ItemRecord | None, recommender: Recommender) -> ItemFeatures | None:
    """The features to embed the item with for `recommender`, or None when it must not
    be in its side table (retired, no features, or learned by the model)."""
    if record is None or not record.available or record.features is None:
        return None
    if recommender.checkpoint.vocab.row(record.item_id):
        return None  # its learned vector serves
    return record.features


class LiveItems:
    """Keeps the serving model's side table in step with the items topic."""

    def __init__(self, catalogue: Records) -> None:
        self.catalogue = catalogue
        self._noted: list[str] = []  # item ids of the records applied, in order
        self._done = 0  # noted records the serving model's side table reflects
        self._serving: Recommender | None = None
        self._prepared: PreparedLive | None = None
        self._holding = False  # a prepare refers to noted positions: keep them
        self._lock = threading.Lock()  # a prepare's start against the loop's forgetting
        self._warned: set[str] = set()  # model versions without a tower, warned once
        self.not_kept = 0  # live items without a row: --max-unknown-items were held

    def note(self, record: ItemRecord) -> None:
        """A record the catalogue applied (on the loop's thread)."""
        self._noted.append(record.item_id)

    def prepare(self, recommender: Recommender) -> None:
        """Embed the items live now with a loaded model's tower (on the loader thread)."""
        with self._lock:  # the loop forgets noted records only while none is held
            self._holding = True
            start = len(self._noted)
        records = self.catalogue.records()  # one C-level copy
        chosen = [(r.item_id, f) for r in records if (f := wanted(r, recommender)) is not None]
        vectors = self._embed(recommender, [f for _, f in chosen])
        if vectors is not None:
            self._prepared = PreparedLive(recommender, [i for i, _ in chosen], vectors, start)

    def apply_to(self, recommender: Recommender, table: ItemTable) -> None:
        """Bring `recommender`'s side table up to the records applied so far (on the
        loop's thread, no batch in the model stage); `table` names the rows."""
        if recommender is not self._serving:
            self._serving = recommender
            prepared, self._prepared, self._holding = self._prepared, None, False
            recommender.extra.clear()
            if prepared is not None and prepared.recommender is recommender:
                self._upsert(recommender, table, prepared.ids, prepared.vectors)
                pending = self._noted[prepared.start:]
            else:  # a model served without a prepare (the first): every featured item
                pending = [r.item_id for r in self.catalogue.records() if r.features]
        else:
            pending = self._noted[self._done:]
        self._done = len(self._noted)
        if self._done > 4096:
            with self._lock:
                if not self._holding:  # nothing refers back: forget
                    self._noted, self._done = [], 0
        if pending:
            self._update(recommender, table, pending)

    def _update(self, recommender: Recommender, table: ItemTable, ids: Sequence[str]) -> None:
        embed: dict[str, ItemFeatures] = {}
        drop: list[int] = []
        for item in dict.fromkeys(ids):  # each once, in order
            features = wanted(self.catalogue.get(item), recommender)
            if features is not None:
                embed[item] = features
            elif (row := table.row(item)) > table.known:
                drop.append(row)
        if drop:
            recommender.extra.remove(np.asarray(drop, dtype=np.int64))
        if embed:
            vectors = self._embed(recommender, list(embed.values()))
            if vectors is not None:
                self._upsert(recommender, table, list(embed), vectors)

    def _upsert(self, recommender: Recommender, table: ItemTable, ids: list[str],
                vectors: np.ndarray) -> None:
        rows = table.rows(ids)  # unknown items get their rows now (0 past the cap)
        kept = rows > 0
        if not kept.all():
            self.not_kept += int((~kept).sum())
            logger.warning("%d live items not recommended: --max-unknown-items items unknown "
                           "to the model are held already", int((~kept).sum()))
        if kept.any():
            recommender.extra.upsert(rows[kept], vectors[kept])
            logger.debug("%d items embedded by their content", int(kept.sum()))

    def _embed(self, recommender: Recommender, features: list[ItemFeatures]
               ) -> np.ndarray | None:
        """[n, d] content vectors, or None when the model has no content tower."""
        if not features:
            return np.zeros((0, recommender.index.dim), dtype=np.float32)
        vectors = recommender.content_vectors(features)
        if vectors is None and recommender.model_version not in self._warned:
            self._warned.add(recommender.model_version)
            logger.warning("items with features arrive on the items topic, but model %s has "
                           "no content tower (train with --item-features): items it does not "
                           "know are recommended only after a retrain",
                           recommender.model_version)
        return vectors
