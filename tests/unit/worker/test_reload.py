"""ModelWatcher on a real model repository layout with a fake loader: what is loaded,
when, and that a refused version is refused once, not at every check."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import pytest

from streamrec.common import pacing
from streamrec.encoder import repository
from streamrec.encoder.errors import CheckpointError
from streamrec.worker import reload
from streamrec.worker.recommend import Recommender
from streamrec.worker.reload import ModelWatcher


class FakeClock:
    """Stands in for the `time` module in reload.py: the schedule moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeLoad:
    """The `load` callable: counts calls per version; versions in `broken` fail."""

    def __init__(self, broken: Iterable[str] = ()) -> None:
        self.broken = set(broken)
        self.calls: list[str] = []
        self.threads: list[threading.Thread] = []  # the thread of each load

    def __call__(self, path: Path) -> Recommender:
        self.calls.append(path.name)
        self.threads.append(threading.current_thread())
        if path.name in self.broken:
            raise CheckpointError(f"{path}/config.json is not JSON")
        return cast(Recommender, f"model {path.name}")  # the watcher only hands it over


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(reload, "time", fake)
    return fake


def make_repo(root: Path, versions: list[str], current: str) -> Path:
    """A model repository: a directory per version and CURRENT naming one."""
    for version in versions:
        (root / version).mkdir(parents=True, exist_ok=True)
    point(root, current)
    return root


def point(repo: Path, version: str) -> None:
    """Make `version` current, as `repository.publish` does (CURRENT changes last)."""
    (repo / version).mkdir(exist_ok=True)
    (repo / repository.CURRENT).write_text(version + "\n", encoding="utf-8")


def settle(watcher: ModelWatcher) -> tuple[str, Recommender] | None:
    """Poll once, then wait for the load that poll may have started (it runs on its own
    thread) and poll again to take its outcome: what the poll loop would swap in."""
    ready = watcher.poll()
    loading = watcher._loading
    if loading is not None:
        assert loading.wait(timeout=10), "the load did not finish"
        ready = watcher.poll()
    return ready


def test_a_new_version_is_loaded_once_and_handed_over(
    tmp_path: Path, clock: FakeClock,
) -> None:
    repo = make_repo(tmp_path / "models", ["v1", "v2"], current="v2")
    load = FakeLoad()
    watcher = ModelWatcher(repo, "v1", load, check_s=60)
    assert watcher.enabled
    watcher.request()
    assert settle(watcher) == ("v2", "model v2")
    watcher.swapped("v2")
    watcher.request()
    assert settle(watcher) is None  # v2 is served now: nothing to load
    assert load.calls == ["v2"]
    point(repo, "v3")
    watcher.request()
    assert settle(watcher) == ("v3", "model v3")
    # Both loads on the loader thread started with the watcher, not one per load:
    # starting a thread makes the poll loop wait until it runs.
    assert load.threads == [watcher._loader.thread] * 2  # type: ignore[union-attr]
    assert load.threads[0] is not threading.current_thread()


def test_a_refused_version_is_not_loaded_again_until_current_changes(
    tmp_path: Path, clock: FakeClock,
) -> None:
    repo = make_repo(tmp_path / "models", ["v1", "broken"], current="broken")
    load = FakeLoad(broken={"broken"})
    watcher = ModelWatcher(repo, "v1", load, check_s=60)
    watcher.request()
    assert settle(watcher) is None
    assert load.calls == ["broken"]
    for _ in range(3):  # SIGHUP again, and the schedule: CURRENT still names it
        watcher.request()
        assert settle(watcher) is None
        clock.now += 60
        assert settle(watcher) is None
    assert load.calls == ["broken"]
    assert watcher.serving == "v1"
    point(repo, "v3")  # a new version is published: it is tried
    watcher.request()
    assert settle(watcher) == ("v3", "model v3")
    assert load.calls == ["broken", "v3"]


def test_one_failed_load_counts_one_refusal(tmp_path: Path, clock: FakeClock) -> None:
    repo = make_repo(tmp_path / "models", ["v1", "broken"], current="broken")
    load = FakeLoad(broken={"broken"})
    watcher = ModelWatcher(repo, "v1", load, check_s=60)
    assert watcher.refusals == 0
    watcher.request()
    settle(watcher)
    assert watcher.refusals == 1
    for _ in range(3):
        watcher.request()
        settle(watcher)
        clock.now += 60
        settle(watcher)
    assert watcher.refusals == 1
    point(repo, "broken2")  # another broken version: one more refusal
    load.broken.add("broken2")
    watcher.request()
    settle(watcher)
    assert watcher.refusals == 2


def test_a_request_checks_at_once_without_waiting_for_the_schedule(
    tmp_path: Path, clock: FakeClock,
) -> None:
    repo = make_repo(tmp_path / "models", ["v1"], current="v1")
    load = FakeLoad()
    watcher = ModelWatcher(repo, "v1", load, check_s=3600)
    point(repo, "v2")
    assert settle(watcher) is None  # the next scheduled check is an hour away
    assert load.calls == []
    watcher.request()  # SIGHUP, POST /reload
    assert settle(watcher) == ("v2", "model v2")


def test_the_schedule_checks_every_check_s(tmp_path: Path, clock: FakeClock) -> None:
    repo = make_repo(tmp_path / "models", ["v1"], current="v1")
    load = FakeLoad()
    watcher = ModelWatcher(repo, "v1", load, check_s=30)
    point(repo, "v2")
    clock.now += 29
    assert settle(watcher) is None
    assert load.calls == []
    clock.now += 1
    assert settle(watcher) == ("v2", "model v2")
    watcher.swapped("v2")
    point(repo, "v3")
    clock.now += 29  # the schedule restarted at the last check
    assert settle(watcher) is None
    clock.now += 1
    assert settle(watcher) == ("v3", "model v3")
    assert load.calls == ["v2", "v3"]


def test_a_plain_checkpoint_or_check_s_0_is_never_checked(tmp_path: Path,
                                                          clock: FakeClock) -> None:
    plain = tmp_path / "checkpoint"
    plain.mkdir()
    load = FakeLoad()
    repo = make_repo(tmp_path / "models", ["v1", "v2"], current="v2")
    for watcher in (ModelWatcher(plain, None, load, check_s=60),
                    ModelWatcher(repo, "v1", load, check_s=0)):
        assert not watcher.enabled
        watcher.request()
        assert settle(watcher) is None
    assert load.calls == []


def test_a_version_loads_on_a_paced_thread(tmp_path: Path, clock: FakeClock) -> None:
    """The loader's seconds of CPU must not take a whole core from the poll loop."""
    repo = make_repo(tmp_path / "models", ["v1", "v2"], current="v2")
    seen: list[float | None] = []

    def load(path: Path) -> Recommender:
        pacer = pacing.current()
        seen.append(None if pacer is None else pacer.duty)
        return cast(Recommender, f"model {path.name}")

    watcher = ModelWatcher(repo, "v1", load, check_s=60)
    watcher.request()
    assert settle(watcher) == ("v2", "model v2")
    assert seen == [reload.LOADER_DUTY]
    assert pacing.current() is None  # the loop's thread is not paced


def test_close_ends_the_loader_thread_after_the_load_in_progress(
    tmp_path: Path, clock: FakeClock,
) -> None:
    repo = make_repo(tmp_path / "models", ["v1", "v2"], current="v2")
    release = threading.Event()

    def load(path: Path) -> Recommender:
        release.wait(10)
        return cast(Recommender, f"model {path.name}")

    watcher = ModelWatcher(repo, "v1", load, check_s=60)
    thread = watcher._loader.thread  # type: ignore[union-attr]
    watcher.request()
    assert watcher.poll() is None  # the load starts, and blocks
    watcher.close()
    thread.join(0.2)
    assert thread.is_alive()  # a load in progress is finished, not cut short
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert settle(watcher) == ("v2", "model v2")
