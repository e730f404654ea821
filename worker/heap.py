"""Keep the garbage collector's full passes off the serving path.

CPython's cyclic collector walks every tracked object in a full (generation 2)
pass, holding the GIL. Once set up, a worker holds about 220,000 of them (torch,
the model, the Kafka clients): a full pass took 120-130 ms on the 2-core dev box,
and every recommendation in flight waits behind it. What is alive when the worker
starts serving lives until it stops, so `settle` moves it out of the collector's
sight (`gc.freeze`); later full passes walk only what came after. A model swap only
freezes (`freeze_new`): the new model's objects leave the collector's passes, and no
full pass runs, which held the poll loop 90-260 ms at a 1M-item swap (docs/
BENCHMARKS.md). The old model is freed by reference counting (a dropped
`Recommender` leaves no cyclic garbage: tests/unit/worker/test_heap.py); objects
frozen earlier that later become cyclic garbage would wait for `thaw`.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger(__name__)


def settle(reason: str) -> int:
    """Collect, then freeze every object alive now; returns how many were frozen."""
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("heap settled (%s): %d objects out of the collector's full passes, in %.0f ms",
                reason, frozen, 1000 * (time.perf_counter() - start))
    return frozen


def thaw() -> None:
    """Hand the frozen objects back to the collector (the worker stops serving)."""
    gc.unfreeze()


def freeze_new(reason: str) -> int:
    """Move the objects created since the last freeze out of the collector's passes,
    without a collection (microseconds); returns how many are frozen in all."""
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("heap frozen (%s): %d objects", reason, frozen)
    return frozen
