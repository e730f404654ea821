"""The worker's item table: every item its histories hold, known to the model or not.

Histories keep every valid event's item. Rows 1..V are the serving model's own
vocabulary rows (so a history row is the encoder's row, no translation on the hot
path); items the model does not know get rows V+1, V+2, ... as they first arrive.
The encoder masks those rows (`Recommender.known`), the changelog stores them by
external id like any other, and when a new model is swapped in (`for_vocab`) every
row is renumbered by external id: an item the new model knows counts at once.

Unknown items are capped (`max_extra`): a stream of junk ids must not grow memory
without bound. Past the cap, a new unknown item is not stored (row 0), as before
this table existed, and counted in `dropped`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from streamrec.encoder.vocab import ItemVocab, rows_in_slices
from streamrec.worker.state.changelog import item_id_table
from streamrec.worker.state.changelog_bulk import ItemRows

logger = logging.getLogger(__name__)

DEFAULT_MAX_EXTRA = 100_000  # ~200 bytes each (id, dict entry, encoded bytes)


class ItemTable:
    """External item id <-> history row: the model's vocabulary, then unknown items."""

    def __init__(self, vocab: ItemVocab, extra: Sequence[str] = (),
                 max_extra: int = DEFAULT_MAX_EXTRA, id_prefix: Sequence[bytes] = ()) -> None:
        """`extra`: items to hold besides the vocabulary's (those it knows are skipped);
        `id_prefix`: `id_table`'s first rows when already encoded (rows 0..n of a table
        whose vocabulary this one extends), so only the rest is encoded."""
        if max_extra < 0:
            raise ValueError(f"max_extra must be >= 0, got {max_extra}")
        self.vocab = vocab
        self.known = len(vocab)  # rows 1..known are the model's
        self.max_extra = max_extra
        model_ids = vocab.ids
        # Row -> external id, model rows then unknown ones (row 0: padding), for what is
        # published; grown by doubling, so a new unknown item costs no copy of a million.
        self._ids = np.empty(self.known + 1 + min(max_extra, 1024), dtype=object)
        self._ids[0], self._ids[1:self.known + 1] = "", model_ids
        self.model_ids = self._ids[: self.known + 1]  # the model's rows only
        self._extra: dict[str, int] = {}
        self._extra_ids: list[str] = []
        # Row -> the id as a changelog record stores it, model rows first; grows with extras.
        rest = model_ids[len(id_prefix) - 1:] if id_prefix else ["", *model_ids]
        self.id_table = [*id_prefix, *item_id_table(rest)]
        self._lookup: ItemRows | None = None
        self.dropped = 0  # unknown items not stored because the table was full
        if len(extra):  # what a table held before a swap: kept, whatever the cap
            unknown = np.flatnonzero(rows_in_slices(vocab.rows, extra) == 0)
            for item in (extra[i] for i in unknown.tolist()):
                if item not in self._extra:
                    self._add(item, capped=False)

    def __len__(self) -> int:
        """Items in the table (rows 1..len), known and unknown."""
        return self.known + len(self._extra_ids)

    @property
    def ids(self) -> np.ndarray:
        """Row -> external id of rows 0..len (a view: valid until the next item is added)."""
        return self._ids[: len(self) + 1]

    @property
    def extra(self) -> int:
        """Items the model does not know held in the table."""
        return len(self._extra_ids)

    def rows(self, items: Sequence[str]) -> np.ndarray:
        """int64 rows of `items`, adding unknown ones (0 only past the cap)."""
        rows = self.vocab.rows(items)
        missing = np.flatnonzero(rows == 0)
        for i in missing.tolist():
            rows[i] = self._row_of(items[i])
        return rows

    def row(self, item: str) -> int:
        """The row of `item`, 0 when the table does not hold it (never adds it)."""
        return self.vocab.row(item) or self._extra.get(item, 0)

    def rows_of_bytes(self, ids: Sequence[bytes]) -> np.ndarray:
        """Rows of ids given as UTF-8 bytes (a restore's misses), adding unknown ones;
        -1 for bytes that are not UTF-8 (the record is malformed)."""
        out = np.empty(len(ids), dtype=np.int64)
        for i, data in enumerate(ids):
            try:
                item = data.decode("utf-8")
            except UnicodeDecodeError:
                out[i] = -1
                continue
            out[i] = self.vocab.row(item) or self._row_of(item)
        return out

    def external(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """External ids of rows 1..len (known or not); IndexError for any other row."""
        out = []
        for row in np.asarray(rows, dtype=np.int64).ravel().tolist():
            if not 1 <= row <= len(self):
                raise IndexError(f"rows must be in 1..{len(self)}, got {row}")
            out.append(self.model_ids[row] if row <= self.known
                       else self._extra_ids[row - self.known - 1])
        return out

    def lookup(self) -> ItemRows:
        """The bulk id -> row lookup of the model's rows (built on first use)."""
        if self._lookup is None:
            self._lookup = ItemRows(self.model_ids[1:].tolist())
        return self._lookup

    def for_vocab(self, vocab: ItemVocab) -> tuple[ItemTable, np.ndarray | None]:
        """The table for a new model and `remap` (old row -> new row): every item kept,
        the new model's vocabulary first, then the items it does not know. For this
        table's own vocabulary, this table and None: every row stays."""
        done = self.finish(self.prepare(vocab))
        return done.table, done.remap

    def prepare(self, vocab: ItemVocab) -> PreparedTable:
        """The costly part of `for_vocab`, safe on another thread while this table is
        in use: for a million items it is a second of work that must not stall the
        poll loop. Items added after it (unknown ones arriving meanwhile) are left to
        `finish`, which the loop runs at the swap."""
        held = len(self._extra_ids)  # extras only ever append: a consistent prefix
        if vocab is self.vocab:  # a retrain on the same catalogue (`load_checkpoint`
            # serves it the serving vocabulary): this table serves on, rows and all
            return PreparedTable(base=self, table=self, remap=None, extras_held=held)
        extras = self._extra_ids[:held]
        if vocab.extends(self.vocab):  # a warm-started retrain, or the same vocabulary
            # Rows 1..known keep their items: only the extras are looked up (a million
            # lookups fewer) and only the new model rows' ids encoded.
            table = ItemTable(vocab, extra=extras, max_extra=self.max_extra,
                              id_prefix=self.id_table[:self.known + 1])
            remap = np.zeros(self.known + held + 1, dtype=np.int64)
            remap[1:self.known + 1] = np.arange(1, self.known + 1)
            remap[self.known + 1:] = rows_in_slices(table.rows, extras)
            return PreparedTable(base=self, table=table, remap=remap, extras_held=held,
                                 stable=self.known)
        old_ids = [*self.model_ids[1:].tolist(), *extras]
        table = ItemTable(vocab, extra=old_ids, max_extra=self.max_extra)
        remap = np.zeros(len(old_ids) + 1, dtype=np.int64)
        remap[1:] = rows_in_slices(table.rows, old_ids)  # the poll loop runs between
        return PreparedTable(base=self, table=table, remap=remap, extras_held=held)

    def finish(self, prepared: PreparedTable) -> PreparedTable:
        """`prepared` completed at the swap: the items added to this table since are
        mapped now (few; all of them if `prepared` was made from another table, which
        is prepared again). Its `table` and `remap` are `for_vocab`'s result."""
        if prepared.base is not self:
            prepared = self.prepare(prepared.table.vocab)
        table, remap = prepared.table, prepared.remap
        if remap is None:  # this table itself: the items added since are in it
            return prepared
        held = len(self._extra_ids)
        late = self._extra_ids[prepared.extras_held:held]
        if late:
            for item in late:
                if item not in table.vocab and item not in table._extra:
                    table._add(item, capped=False)
            remap = np.concatenate([remap, table.rows(late)])
        table.dropped = self.dropped
        return replace(prepared, remap=remap, extras_held=held)

    def _row_of(self, item: str) -> int:
        row = self._extra.get(item)
        if row is None:
            row = self._add(item)
        return row

    def _add(self, item: str, capped: bool = True) -> int:
        if capped and len(self._extra_ids) >= self.max_extra:
            if not self.dropped:
                logger.warning("%d items unknown to the model are held (--max-unknown-items); "
                               "further unknown items are not kept in histories until a model "
                               "that knows them is served", self.max_extra)
            self.dropped += 1
            return 0
        row = self.known + len(self._extra_ids) + 1
        if row >= len(self._ids):
            grown = np.empty(max(2 * len(self._ids), row + 1), dtype=object)
            grown[:row] = self._ids[:row]
            self._ids = grown
        self._ids[row] = item
        self.id_table.extend(item_id_table([item]))
        self._extra[item] = row
        self._extra_ids.append(item)
        return row


@dataclass(frozen=True)
class PreparedTable:
    """An `ItemTable.prepare` result: the new table and remap as of `extras_held`."""

    base: ItemTable  # the table it was prepared from
    table: ItemTable
    remap: np.ndarray | None  # old row -> new row, rows 0..known + extras_held of `base`
    # (None: `table` is `base`, for its own vocabulary; no row changes)
    extras_held: int
    stable: int = 0  # rows 1..stable keep their numbers (a vocabulary that extends `base`'s)
