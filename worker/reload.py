"""Hot model reload: watch a model repository, load a new version off the hot path.

When `--model` names a model repository (`encoder/repository.py`), the worker checks
its `CURRENT` pointer every `--model-check-s` seconds (and at once on SIGHUP). A new
version is loaded and checked on a thread of its own (the same `Recommender.load`
the worker starts with: hashes, shapes, vocabulary), so the poll loop never waits
for it; the loop swaps it in between two batches (`swap.ModelSwap`). A version
that fails to load is refused with a log line and a metric, the old model keeps
serving, and the refused version is not tried again until `CURRENT` changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from streamrec.common.handoff import Handoff
from streamrec.common.pacing import paced
from streamrec.encoder import repository
from streamrec.encoder.errors import CheckpointError
from streamrec.worker.recommend import Recommender

logger = logging.getLogger(__name__)

# The loader thread's share of one core (`common/pacing.py`): a million-item version's
# few seconds of CPU spread over about four times as long, beside the loop.
LOADER_DUTY = 0.25


class ModelWatcher:
    """Loads the repository's current version when it changes; `poll()` hands it over."""

    def __init__(
        self, model_dir: Path, serving: str | None, load: Callable[[Path], Recommender],
        check_s: float,
    ) -> None:
        self.model_dir = model_dir
        self.serving = serving  # version directory name being served (None: not a repo)
        self.check_s = check_s
        self._load = load
        self._next_check = time.monotonic() + check_s
        self._requested = threading.Event()
        self._refused: str | None = None
        # The loader: a thread started now, not at each load (`common/handoff.py`); none
        # when there is nothing to watch.
        watched = repository.is_repository(model_dir) and check_s > 0
        self._loader = Handoff("streamrec-model-load") if watched else None
        self._loading: threading.Event | None = None  # set once the load handed over ends
        self._loaded: tuple[str, Recommender] | None = None
        self._failure: tuple[str, BaseException] | None = None
        self.refusals = 0

    @property
    def enabled(self) -> bool:
        """The model directory is a repository watched every `check_s` > 0 seconds."""
        return self._loader is not None

    def close(self) -> None:
        """End the loader thread once a load in progress is done (not waited for)."""
        if self._loader is not None:
            self._loader.close()

    def request(self) -> None:
        """Check at the next poll (SIGHUP); safe from a signal handler."""
        self._requested.set()

    def poll(self) -> tuple[str, Recommender] | None:
        """A loaded new version to swap in, if one is ready; starts a load when due."""
        if self._loader is None:  # not enabled
            return None
        if self._loading is not None:
            if not self._loading.is_set():
                return None
            self._loading = None
            if self._failure is not None:
                version, exc = self._failure
                self._failure = None
                self._refused = version
                self.refusals += 1
                logger.error("refused model version %s of %s: %s; still serving %s",
                             version, self.model_dir, exc, self.serving)
                return None
            ready, self._loaded = self._loaded, None
            return ready
        now = time.monotonic()
        if not self._requested.is_set() and now < self._next_check:
            return None
        self._requested.clear()
        self._next_check = now + self.check_s
        try:
            version = repository.current_version(self.model_dir)
        except (OSError, CheckpointError) as exc:  # e.g. CURRENT names a missing directory
            logger.warning("cannot use %s/CURRENT: %s; still serving %s", self.model_dir,
                           exc, self.serving)
            return None
        if version in (self.serving, self._refused):
            return None
        logger.info("model version %s published in %s: loading it", version, self.model_dir)
        self._loading = self._loader.submit(partial(self._load_version, version))
        return None

    def swapped(self, version: str) -> None:
        """The loop now serves `version`."""
        self.serving = version

    def _load_version(self, version: str) -> None:
        try:
            with paced(LOADER_DUTY) as pacer:
                self._loaded = (version, self._load(self.model_dir / version))
            logger.info("model version %s loaded (the loader rested %.1f s to leave the "
                        "loop its CPU)", version, pacer.rested_s)
        except BaseException as exc:  # handed to poll(), which refuses the version
            self._failure = (version, exc)
