"""Rebalances: the partitions this worker owns, and what follows when they move.

The consumer calls these inside its `poll` (kafka-python 3 on its own IO loop, where
the consumer cannot commit; docs/RELIABILITY.md, "Rebalances under kafka-python 3"):
a newly assigned partition is restored from its changelog before its first event is
applied; before partitions are revoked every record sent so far is acknowledged,
so the next owner restores a complete changelog; partitions lost with an expired
session are dropped without writing anything more. A partition that leaves takes
its pending users, its positions and its state with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from streamrec.kafka_io.port import TopicPartition
from streamrec.worker.batcher import MicroBatcher
from streamrec.worker.commits import Commits
from streamrec.worker.errors import RestoreAbandonedError
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.state.durable import DurableHistories
from streamrec.worker.watchdog import Watchdog

logger = logging.getLogger(__name__)


class Ownership:
    """The events-topic partitions restored and owned, kept through rebalances."""

    def __init__(self, topic: str, state: DurableHistories, batcher: MicroBatcher,
                 commits: Commits, metrics: WorkerMetrics, watchdog: Watchdog,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.topic = topic
        self.state = state
        self.batcher = batcher
        self.commits = commits
        self.metrics = metrics
        self.watchdog = watchdog  # told when the worker joins and leaves, and of restores
        self.stopping = stopping  # true once the worker stops: a restore is left
        self.owned: set[int] = set()  # partitions restored and owned
        # Revoked, the next assignment not yet known: nothing of them is applied or cut
        # into a batch meanwhile (`serves`). A poll may return records fetched before
        # the revocation after its callback ran (confluent: `poll`, then `consume`
        # serves the rebalance); they come again if the partition comes back, since
        # no commit passes a record that was not applied.
        self.suspended: set[int] = set()
        self.assigned_once = False
        self.restoring = False

    @property
    def ready(self) -> bool:
        """True once partitions are assigned and restored (what /readyz reports)."""
        return self.assigned_once and not self.restoring

    def serves(self, partition: int) -> bool:
        """True when records of `partition` are applied now: owned, not revoked."""
        return partition in self.owned and partition not in self.suspended

    def assigned(self, assigned: list[TopicPartition]) -> None:
        """Drop partitions that moved away; restore the new ones before their events.

        A restore the worker's stop interrupts is left (`RestoreAbandonedError`): its
        partitions are not owned, so none of their events is applied or committed.
        """
        owned = {tp.partition for tp in assigned}
        self.suspended = set()
        self.watchdog.joined(len(owned))  # an empty assignment too: a member, idle
        for partition in sorted(self.owned - owned):
            dropped = self._forget(partition)
            logger.info("partition %d moved away: dropped %d users", partition, dropped)
        new = sorted(owned - self.owned)
        if new:
            self.restoring = True
            self.metrics.restoring.set(1)
            try:
                restored = self.state.restore(new, progress=self.watchdog.progressed,
                                              stopping=self.stopping)
            except RestoreAbandonedError as exc:
                logger.warning("%s; they are not served", exc)
                self.owned = owned - set(new)
                return
            finally:
                self.restoring = False
                self.metrics.restoring.set(0)
            self.metrics.observe_restore(restored)
        self.owned = owned
        self.assigned_once = True
        logger.info("assigned partitions %s (restored %s)", sorted(owned), new)

    def revoked(self, revoked: list[TopicPartition]) -> None:
        """Before a rebalance: every changed history reaches the changelog, acknowledged.

        The next owner restores from the changelog, so it must be complete before
        the partition moves. Inside the consumer's `poll` no offsets are committed
        (with either adapter); events after the last commit are replayed by the next
        owner, and the applied offsets in the changelog make that replay a no-op for
        state. With exactly-once the transaction, offsets included, commits through
        the producer as usual. Pending users stay pending: they are published if the
        partition comes back, and dropped (their events replayed by the new owner) if
        it does not.
        """
        self.watchdog.left()
        self.suspended = {tp.partition for tp in revoked}
        if self.commits.failed:
            return  # after a failed publish nothing more is written or committed
        self.commits.commit_now(consumer_commit=False)
        logger.info("revoked partitions %s", sorted(tp.partition for tp in revoked))

    def lost(self, lost: list[TopicPartition]) -> None:
        """The session expired: another worker may own these partitions already.

        Nothing more is written or committed for them; their pending users and
        state are dropped, and the owner replays from the last commit. An open
        transaction is aborted (its writes could race the new owner's).
        """
        self.watchdog.left()
        self.commits.abort()
        for tp in lost:
            self._forget(tp.partition)
        logger.warning("lost partitions %s (session expired); dropped their state",
                       sorted(tp.partition for tp in lost))

    def _forget(self, partition: int) -> int:
        """Drop everything this worker holds for a partition it no longer owns."""
        self.batcher.drop_partition(partition)
        self.commits.forget(partition)
        self.owned.discard(partition)
        self.metrics.forget_partition(self.topic, partition)
        return self.state.drop(partition)
