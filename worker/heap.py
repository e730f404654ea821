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

Freeing is not free either: a million-item vocabulary is millions of Python objects
(ids, their encoded bytes, dict entries), and dropping the last reference to a list
or dict of them is one C loop that holds the GIL for 50-60 ms. `release_later` takes
the swapped-out model's large containers apart on a thread of its own, a slice at a
time and paced (`common/pacing.py`), so the poll loop gets the GIL back between slices
and most of a core besides; what the new model still uses (the same vocabulary, when
its `items.json` is the old one's) is left alone.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from functools import partial

import numpy as np

from streamrec.common.handoff import Handoff
from streamrec.common.pacing import paced, pause

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


def freeze_new(reason: str) -> None:
    """Move the objects created since the last freeze out of the collector's passes,
    without a collection (microseconds). Not counted: `gc.get_freeze_count` walks every
    frozen object, 17-36 ms for the two million a 1M-item worker holds."""
    gc.freeze()
    logger.debug("heap frozen (%s)", reason)


RELEASE_SLICE = 20_000  # references dropped per step of `release_later` (~1-2 ms of GIL)
RELEASE_DEPTH = 4  # attribute levels searched for large containers
RELEASE_DUTY = 0.25  # the release thread's share of a core (`common/pacing.py`)


def release_later(*objects: object, on: Handoff | None = None,
                  keep: tuple[object, ...] = ()) -> threading.Event:
    """Drop `objects` on the thread of `on` (a thread started now when None): lists,
    dicts and object arrays of more than RELEASE_SLICE references found in their
    attributes (RELEASE_DEPTH levels down) are emptied a slice at a time first, but
    those that `keep` (what serves now) reaches through its attributes: the new model
    may share the old one's vocabulary. Beyond that, the caller must hold no other use
    of them: they are taken apart in place. Returns an event set once they are."""
    return (on or Handoff("streamrec-release")).submit(
        partial(_release, list(objects), list(keep)))


def _large_containers(objects: list[object], depth_limit: int | None = RELEASE_DEPTH,
                      ) -> list[object]:
    """Large containers in `objects`' attributes, `depth_limit` levels down (None: all)."""
    found, seen = [], set()
    stack = [(obj, 0) for obj in objects]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, dict)) or (isinstance(obj, np.ndarray)
                                             and obj.dtype == object):
            if len(obj) > RELEASE_SLICE:
                found.append(obj)
        elif (depth_limit is None or depth < depth_limit) and hasattr(obj, "__dict__"):
            # one C call: `keep`'s objects are in use on the loop's thread meanwhile
            stack.extend((value, depth + 1) for value in list(vars(obj).values()))
    return found


def _release(objects: list[object], keep: list[object]) -> None:
    with paced(RELEASE_DUTY):
        _take_apart(objects, keep)


def _take_apart(objects: list[object], keep: list[object]) -> None:
    start = time.perf_counter()
    kept = {id(c) for c in _large_containers(keep, depth_limit=None)}
    keep.clear()
    containers = [c for c in _large_containers(objects) if id(c) not in kept]
    objects.clear()
    for container in containers:
        if isinstance(container, dict):
            keys = list(container)
            for i in range(0, len(keys), RELEASE_SLICE):
                for key in keys[i:i + RELEASE_SLICE]:
                    del container[key]
                pause()  # the GIL back to the loop, and a rest
            del keys
        elif isinstance(container, list):
            while container:
                del container[-RELEASE_SLICE:]
                pause()
        else:  # object array: drop its references, the array itself is one buffer
            for i in range(0, len(container), RELEASE_SLICE):  # type: ignore[arg-type]
                container[i:i + RELEASE_SLICE] = None  # type: ignore[index]
                pause()
    containers.clear()
    logger.info("released the old model's objects in %.0f ms", 1000 * (time.perf_counter() - start))
