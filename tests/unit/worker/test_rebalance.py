"""Ownership through rebalances, as the watchdog sees it, and a restore a stop interrupts:
against stand-ins for the state, batcher and commit protocol."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamrec.kafka_io.port import TopicPartition
from streamrec.worker.errors import RestoreAbandonedError
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.rebalance import Ownership
from streamrec.worker.state.durable import Restored
from streamrec.worker.watchdog import Watchdog

TOPIC = "events"


@dataclass
class FakeState:
    """Restores succeed, or are left as a stop would leave them."""

    stop_restores: bool = False
    restored: list[list[int]] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def restore(self, partitions, progress, stopping):  # type: ignore[no-untyped-def]
        progress()
        if self.stop_restores and stopping():
            raise RestoreAbandonedError(f"restore of partitions {partitions} left")
        self.restored.append(list(partitions))
        return Restored(tuple(partitions), 0, 0, 0.0, 1)

    def drop(self, partition: int) -> int:
        self.dropped.append(partition)
        return 0


class FakeBatcher:
    def drop_partition(self, partition: int) -> None:
        pass


@dataclass
class FakeCommits:
    failed: bool = False
    flushed: int = 0

    def forget(self, partition: int) -> None:
        pass

    def commit_now(self, consumer_commit: bool = True) -> None:
        self.flushed += 1

    def abort(self) -> None:
        pass


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def ownership(state: FakeState, stopping: bool = False) -> tuple[Ownership, Watchdog, Clock]:
    clock = Clock()
    dog = Watchdog(60, "g", clock=clock)
    own = Ownership(TOPIC, state, FakeBatcher(), FakeCommits(), WorkerMetrics(),  # type: ignore[arg-type]
                    dog, stopping=lambda: stopping)
    return own, dog, clock


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in partitions]


def test_the_watchdog_hears_of_every_assignment_revocation_and_loss() -> None:
    own, dog, clock = ownership(FakeState())
    clock.now = 70
    assert dog.check() is not None  # subscribed at 0, no assignment since
    own.assigned(tps())  # an empty assignment: a member with nothing to do
    assert dog.check() is None
    own.revoked(tps())
    clock.now = 140
    assert dog.check() is not None
    own.assigned(tps(0, 1))
    assert dog.check() is None
    own.lost(tps(0, 1))
    clock.now = 210
    assert dog.check() is not None


def test_a_restore_left_at_a_stop_leaves_its_partitions_unowned() -> None:
    state = FakeState()
    own, _, _ = ownership(state)
    own.assigned(tps(0))
    assert own.owned == {0}
    state.stop_restores = True
    own.stopping = lambda: True
    own.assigned(tps(0, 1, 2))  # 1 and 2 are new: their restore is left
    assert own.owned == {0}  # 0 was restored before and stays; 1 and 2 are not served
    assert not own.restoring
    assert state.restored == [[0]]


def test_revoked_partitions_are_not_served_until_the_next_assignment() -> None:
    """Records a poll returns after the revocation's callback are not applied, and no
    batch is cut, until the assignment says which partitions stay."""
    own, _, _ = ownership(FakeState())
    own.assigned(tps(0, 1, 2))
    assert [own.serves(p) for p in (0, 1, 2, 3)] == [True, True, True, False]
    own.revoked(tps(0, 1, 2))
    assert own.suspended == {0, 1, 2}
    assert not any(own.serves(p) for p in (0, 1, 2))
    own.assigned(tps(1, 2))
    assert own.suspended == set()
    assert [own.serves(p) for p in (0, 1, 2)] == [False, True, True]
