"""`KafkaConsumer` behind the port: records and partitions pass through uncopied.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer
from kafka import TopicPartition as KpPartition
from kafka.structs import OffsetAndMetadata

from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.kafka_python.base import open_client, to_kp, to_port, translated
from streamrec.kafka_io.port import (
    MAX_REQUEST_BYTES,
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    ConsumerSettings,
    RebalanceCallback,
    Record,
    TopicPartition,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)

TRANSIENT_LOG_S = 30.0  # while polls keep failing, one warning per this long
TRANSIENT_WAIT_S = 0.05  # the least a failed poll waits, so a poll(0) loop does not spin
CALLBACK_CHECK_S = 0.01  # how often the IO loop looks whether a rebalance callback ended


def _not_our_listener(record: logging.LogRecord) -> bool:
    """Drop kafka-python's warning that a listener over 1 s blocked its heartbeats:
    it times `_Listener`'s wait too, which blocks nothing (the worker logs restores)."""
    return not (str(record.msg).startswith("Rebalance listener")
                and isinstance(record.args, tuple) and record.args[:1] == ("_Listener",))


logging.getLogger("kafka.coordinator.consumer").addFilter(_not_our_listener)


class _Listener(AsyncConsumerRebalanceListener):
    """kafka-python's rebalance listener calling the port's callbacks off its IO loop.

    kafka-python 3 runs a plain listener inline on its IO loop, which then sends no
    heartbeats: a restore longer than the session timeout expired the session, lost
    the partitions it was restoring, and started over after the next assignment, for
    good. This listener runs each callback on a thread of its own and waits for it on
    the loop, so heartbeats go on; the poll that called it still returns only after
    the callback has finished, as with librdkafka.
    """

    def __init__(self, loop: Any, assigned: RebalanceCallback | None,
                 revoked: RebalanceCallback | None, lost: RebalanceCallback | None) -> None:
        self.loop = loop  # the consumer's IO loop (its `sleep` yields to heartbeats)
        self.assigned, self.revoked, self.lost = assigned, revoked, lost

    async def on_partitions_revoked(self, revoked: list[KpPartition]) -> None:
        await self._call(self.revoked, revoked)

    async def on_partitions_assigned(self, assigned: list[KpPartition]) -> None:
        await self._call(self.assigned, assigned)

    async def on_partitions_lost(self, lost: list[KpPartition]) -> None:
        await self._call(self.lost if self.lost is not None else self.revoked, lost)

    async def _call(self, callback: RebalanceCallback | None,
                    partitions: list[KpPartition]) -> None:
        """Run `callback` on its own thread; the loop serves heartbeats until it ends."""
        if callback is None:
            return
        failed: list[BaseException] = []

        def run() -> None:
            try:
                callback([to_port(tp) for tp in partitions])
            except BaseException as exc:  # re-raised on the loop, where kafka-python logs it
                failed.append(exc)

        thread = threading.Thread(target=run, name="rebalance-callback", daemon=True)
        thread.start()
        while thread.is_alive():
            await self.loop.sleep(CALLBACK_CHECK_S)
        if failed:
            raise failed[0]


class KafkaPythonConsumer(Consumer):
    """`KafkaConsumer` behind the port."""

    client = "kafka-python"

    def __init__(self, settings: ConsumerSettings, security: KafkaSecurity) -> None:
        config: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap,
            "group_id": settings.group_id,
            "client_id": settings.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": settings.auto_offset_reset,
            "max_partition_fetch_bytes": settings.max_partition_fetch_bytes,
            "fetch_max_bytes": max(4 * MAX_REQUEST_BYTES, settings.max_partition_fetch_bytes),
            "fetch_max_wait_ms": settings.fetch_max_wait_ms,
            "isolation_level": "read_committed",
            "max_poll_records": settings.max_poll_records,
            "session_timeout_ms": settings.session_timeout_ms,
            "heartbeat_interval_ms": settings.heartbeat_interval_ms,
            "allow_auto_create_topics": settings.allow_auto_create_topics,
            **security.client_kwargs(),
        }
        self._c = open_client(settings.bootstrap, security, lambda: KafkaConsumer(**config))
        self._warned_at: float | None = None  # while polls fail: the last warning's time

    def subscribe(
        self, topic: str, *, on_assigned: RebalanceCallback | None = None,
        on_revoked: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None,
    ) -> None:
        with translated():
            self._c.subscribe([topic], listener=_Listener(self._c._net, on_assigned,
                                                            on_revoked, on_lost))

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Record]]:
        start = time.monotonic()
        try:
            with translated():
                # Its partitions are tuples equal to the port's, its records have the
                # port's attributes: handed out as they are, no copy per record.
                polled = self._c.poll(timeout_ms=max(0, int(timeout_s * 1000)))
        except KafkaClientError as exc:
            if not exc.retriable or exc.denied is not None:
                raise
            self._transient(exc)
            time.sleep(max(TRANSIENT_WAIT_S, timeout_s - (time.monotonic() - start)))
            return {}
        self._warned_at = None
        self._rejoin_if_lost()
        return polled  # type: ignore[no-any-return]

    def _transient(self, exc: KafkaClientError) -> None:
        """A retriable error out of `poll` (the broker away: kafka-python 3 raises its
        coordinator lookup's connection error) is logged and polled through, as
        librdkafka does with its own: the watchdog, not the client, decides when
        waiting for the broker has lasted too long."""
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= TRANSIENT_LOG_S:
            logger.warning("consumer: %s (retrying)", exc)
            self._warned_at = now

    def _rejoin_if_lost(self) -> None:
        """Ask again for a join that kafka-python 3.0.12 would never finish.

        The group leader rejoins when the topic's metadata changes (at every start:
        the first JoinGroup goes out before the subscribed topic's metadata arrives).
        If that join's answers come after `poll` returned, the leader's own assignment
        makes `need_rejoin()` false, so no later `poll` takes them: the member stays
        REBALANCING for good, with no partitions, no heartbeats and every commit
        refused (seen after the group's offsets were rewound, when the first polls
        return records and the loop polls for milliseconds). A join in progress that
        is no longer needed is asked for again: the next `poll` sends a new JoinGroup.
        """
        coordinator = self._c._coordinator
        if coordinator.rejoining and not coordinator.need_rejoin():
            logger.info("kafka-python left a rejoin of group %s unfinished; joining again",
                        coordinator.group_id)
            coordinator.request_rejoin()

    def assignment(self) -> set[TopicPartition]:
        return {to_port(tp) for tp in self._c.assignment()}

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.pause(*(to_kp(tp) for tp in partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.resume(*(to_kp(tp) for tp in partitions))

    def paused(self) -> set[TopicPartition]:
        return {to_port(tp) for tp in self._c.paused()}

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        with translated():
            self._c.commit({to_kp(tp): OffsetAndMetadata(offset, "", -1)
                            for tp, offset in offsets.items()})

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._c.highwater(to_kp(partition))  # type: ignore[no-any-return]

    def group_metadata(self) -> Any:
        return self._c.group_metadata()

    def partitions_for(self, topic: str) -> set[int] | None:
        with translated():
            return self._c.partitions_for_topic(topic)  # type: ignore[no-any-return]

    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        with translated():
            self._c.assign([to_kp(tp) for tp in offsets])
            for tp, offset in offsets.items():
                self.seek(tp, offset)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        tp = to_kp(partition)
        if offset == OFFSET_BEGINNING:
            self._c.seek_to_beginning(tp)
        elif offset == OFFSET_END:
            self._c.seek_to_end(tp)
        else:
            self._c.seek(tp, offset)

    def position(self, partition: TopicPartition, timeout_s: float) -> int | None:
        with translated():
            return self._c.position(to_kp(partition),  # type: ignore[no-any-return]
                                    timeout_ms=max(1, int(timeout_s * 1000)))

    def watermarks(self, partitions: Iterable[TopicPartition], timeout_s: float,
                   ) -> dict[TopicPartition, tuple[int, int]]:
        tps = [to_kp(tp) for tp in partitions]
        with translated():
            begins = self._c.beginning_offsets(tps, timeout_ms=int(timeout_s * 1000))
            ends = self._c.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
        return {to_port(tp): (begins[tp], ends[tp]) for tp in tps}

    def offsets_for_times(self, times: Mapping[TopicPartition, int], timeout_s: float,
                          ) -> dict[TopicPartition, int | None]:
        with translated():
            found = self._c.offsets_for_times({to_kp(tp): ms for tp, ms in times.items()},
                                              timeout_ms=int(timeout_s * 1000))
        return {to_port(tp): (at.offset if at is not None else None) for tp, at in found.items()}

    def close(self) -> None:
        self._c.close(autocommit=False)
