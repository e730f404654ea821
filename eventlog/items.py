"""A catalogue file into the items topic: `streamrec items publish`.

The file is JSON lines, one item record a line as the items topic carries it
(docs/CONTRACTS.md, "Item"), or `{"item_id": "x", "retire": true}` to publish a
tombstone (the item retired and its features forgotten). Every line is checked
against the item contract before anything is sent (`worker/item_records.item_line`),
so a file never publishes a record a worker would dead-letter, and a bad file
publishes nothing. Records go in file order, keyed by item id: the latest line of an
item is its state.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from streamrec.encoder.errors import DataFormatError
from streamrec.eventlog.replay import confirm_sent
from streamrec.kafka_io.port import Delivery, Producer
from streamrec.worker.item_records import item_line
from streamrec.worker.validate import Limits

logger = logging.getLogger(__name__)

SHOWN_ERRORS = 5  # bad lines named in the error
CONFIRM_EVERY = 10_000  # records between two waits for their acknowledgements


@dataclass(frozen=True)
class CatalogueFile:
    """The records a catalogue file publishes, in file order."""

    records: list[tuple[bytes, bytes | None]]  # (key, value); None: a tombstone

    @property
    def retired(self) -> int:
        """Tombstones among the records."""
        return sum(1 for _, value in self.records if value is None)


def read_catalogue(path: Path, limits: Limits) -> CatalogueFile:
    """Every non-blank line of `path` as the record to produce; `DataFormatError` naming
    the first bad lines (and how many there are) if any line is bad."""
    records: list[tuple[bytes, bytes | None]] = []
    errors: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                got = item_line(json.loads(line), limits)
            except (ValueError, RecursionError) as exc:
                got = f"not JSON: {str(exc)[:100]}"
            if isinstance(got, str):
                errors.append(f"line {number}: {got}")
            else:
                records.append(got)
    if errors:
        shown = "; ".join(errors[:SHOWN_ERRORS])
        more = f" (and {len(errors) - SHOWN_ERRORS} more)" if len(errors) > SHOWN_ERRORS else ""
        raise DataFormatError(f"{path}: {len(errors)} bad lines, nothing published: "
                              f"{shown}{more}")
    return CatalogueFile(records)


def publish_items(producer: Producer, topic: str, catalogue: CatalogueFile) -> int:
    """Send every record and wait for all of them (`PublishError` if one failed)."""
    deliveries: list[Delivery] = []
    for key, value in catalogue.records:
        deliveries.append(producer.send(topic, value, key=key))
        producer.poll(0)
        if len(deliveries) >= CONFIRM_EVERY:
            confirm_sent(producer, deliveries, what="item records")
    confirm_sent(producer, deliveries, what="item records")
    logger.info("published %d item records to %s", len(catalogue.records), topic)
    return len(catalogue.records)
