"""confluent-kafka's `Consumer` behind the port: waits for the first record, then takes
what is ready; end-of-partition events count as the position for reads to the end.

A group member's new partitions are assigned with the group's committed offsets read
here, not left to librdkafka's own read of them: when that OffsetFetch meets a
coordinator that has just moved (a broker restarted) and is refused as a whole
(NOT_COORDINATOR, no partitions in the answer), librdkafka never retries it and never
starts fetching those partitions, while the consumer stays in the group
(confluentinc/librdkafka#5586; hit by this project's 3-node failover test). Read here,
a refused read is retried until the coordinator answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException
from confluent_kafka import Consumer as CkConsumer
from confluent_kafka import TopicPartition as CkPartition

from streamrec.kafka_io.confluent.base import (
    DENIED,
    METADATA_TIMEOUT_S,
    ErrorLog,
    common_config,
    connect,
    to_ck,
    to_port,
    translate,
)
from streamrec.kafka_io.port import (
    MAX_REQUEST_BYTES,
    ConsumedRecord,
    Consumer,
    ConsumerSettings,
    RebalanceCallback,
    Record,
    TopicPartition,
)
from streamrec.kafka_io.security import KafkaSecurity

logger = logging.getLogger(__name__)

COMMITTED_TIMEOUT_S = 60.0  # how long an assignment retries reading its committed offsets
COMMITTED_RETRY_S = 0.5  # between two reads
RESET = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}  # no committed offset yet


class ConfluentConsumer(Consumer):
    """confluent-kafka's `Consumer` behind the port."""

    client = "confluent"
    fetches_in_background = True
    commits_from_any_thread = True

    def __init__(self, settings: ConsumerSettings, security: KafkaSecurity) -> None:
        self._errors = ErrorLog()
        config = {
            **common_config(settings.bootstrap, settings.client_id, security, self._errors),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": settings.auto_offset_reset,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
            "max.partition.fetch.bytes": settings.max_partition_fetch_bytes,
            "fetch.max.bytes": 4 * MAX_REQUEST_BYTES,
            "receive.message.max.bytes": 4 * MAX_REQUEST_BYTES + 65536,
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": settings.heartbeat_interval_ms,
            "allow.auto.create.topics": settings.allow_auto_create_topics,
            "partition.assignment.strategy": "range",
            "enable.partition.eof": settings.group_id is None,
        }
        if settings.group_id is not None:
            config["group.id"] = settings.group_id
        else:  # librdkafka wants one; nothing is ever joined or committed with it
            config["group.id"] = f"{settings.client_id}-no-group"
        self._groupless = settings.group_id is None
        self._c = CkConsumer(config)
        self._max_records = settings.max_poll_records
        self._reset = RESET[settings.auto_offset_reset]
        self._paused: set[TopicPartition] = set()
        self._eof: dict[TopicPartition, int] = {}
        try:
            connect(self._c, settings.bootstrap, self._errors, lambda: self._c.poll(0))
        except BaseException:
            self._c.close()
            raise

    def subscribe(
        self, topic: str, *, on_assigned: RebalanceCallback | None = None,
        on_revoked: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None,
    ) -> None:
        def assigned(_: Any, partitions: list[CkPartition]) -> None:
            self._unpause(partitions)  # a new assignment starts unpaused
            if partitions:  # positions first: the callback may read them
                self._c.assign(self._committed(partitions))
            if on_assigned is not None:
                on_assigned([to_port(tp) for tp in partitions])

        def revoked(_: Any, partitions: list[CkPartition]) -> None:
            if on_revoked is not None:
                on_revoked([to_port(tp) for tp in partitions])

        def lost(_: Any, partitions: list[CkPartition]) -> None:
            callback = on_lost if on_lost is not None else on_revoked
            if callback is not None:
                callback([to_port(tp) for tp in partitions])

        try:
            self._c.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)
        except KafkaException as exc:
            raise translate(exc) from exc

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Record]]:
        # `consume` returns only when its batch is full or its whole timeout has passed:
        # wait with `poll`, which returns at the first message, then take what is ready.
        try:
            first = self._c.poll(max(0.0, timeout_s))
            if first is None:
                return {}
            messages = [first]
            if self._max_records > 1:
                messages += self._c.consume(self._max_records - 1, 0)
        except KafkaException as exc:
            raise translate(exc) from exc
        # Per message only C calls and plain tuples (a named tuple's constructor is a
        # Python frame: ~0.4 us a message, half of it saved by `_make`).
        by_partition: dict[tuple[str, int], list[Record]] = {}
        make = ConsumedRecord._make
        for m in messages:
            err = m.error()
            if err is not None:
                self._consume_error(m, err)
                continue
            topic, partition = m.topic(), m.partition()
            records = by_partition.get((topic, partition))
            if records is None:
                records = by_partition[(topic, partition)] = []
            records.append(make((topic, partition, m.offset(), m.timestamp()[1], m.key(),
                                 m.value(), m.headers() or [])))
        return {TopicPartition(*tp): records for tp, records in by_partition.items()}

    def _committed(self, partitions: list[CkPartition]) -> list[CkPartition]:
        """`partitions` at the group's committed offsets (the reset position where there
        is none), read until the coordinator answers or `COMMITTED_TIMEOUT_S` passes."""
        deadline = time.monotonic() + COMMITTED_TIMEOUT_S
        while True:
            try:
                left = max(COMMITTED_RETRY_S, deadline - time.monotonic())
                found = self._c.committed(partitions, timeout=left)
                failed = [tp.error for tp in found if tp.error is not None]
                if not failed:
                    break
                error = KafkaException(failed[0])
            except KafkaException as exc:
                error = exc
            refused = error.args[0] if error.args else None
            final = isinstance(refused, KafkaError) and (refused.fatal()
                                                         or refused.code() in DENIED)
            if final or time.monotonic() > deadline:  # a moved coordinator, a timeout: again
                raise translate(error)
            logger.info("reading the committed offsets of %d partition(s) again: %s",
                        len(partitions), error)
            time.sleep(COMMITTED_RETRY_S)
        return [CkPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else self._reset)
                for tp in found]

    def _consume_error(self, m: Any, err: KafkaError) -> None:
        """End of a partition is noted; refusals and fatal errors raise; others log."""
        if err.code() == KafkaError._PARTITION_EOF:
            self._eof[TopicPartition(m.topic(), m.partition())] = m.offset()
            return
        if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED and self._groupless:
            # librdkafka looks up the coordinator of the placeholder group it insists on;
            # a group-less reader needs no rights on it.
            logger.debug("group-less consumer: %s (ignored)", err.str())
            return
        if err.fatal() or err.code() in DENIED:
            raise translate(KafkaException(err), names=(m.topic(),) if m.topic() else ())
        logger.warning("consumer: %s", err.str())

    def assignment(self) -> set[TopicPartition]:
        return {to_port(tp) for tp in self._c.assignment()}

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = [tp for tp in partitions if tp not in self._paused]
        if wanted:
            self._c.pause([to_ck(tp) for tp in wanted])
            self._paused.update(wanted)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = [tp for tp in partitions if tp in self._paused]
        if wanted:
            self._c.resume([to_ck(tp) for tp in wanted])
            self._paused.difference_update(wanted)

    def paused(self) -> set[TopicPartition]:
        return self._paused & self.assignment()

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            answered = self._c.commit(offsets=[to_ck(tp, o) for tp, o in offsets.items()],
                                      asynchronous=False)
        except KafkaException as exc:
            raise translate(exc) from exc
        failed = [tp for tp in answered or () if tp.error is not None]
        if failed:
            raise translate(KafkaException(failed[0].error))

    def highwater(self, partition: TopicPartition) -> int | None:
        try:
            _, high = self._c.get_watermark_offsets(to_ck(partition), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    def group_metadata(self) -> Any:
        return self._c.consumer_group_metadata()

    def partitions_for(self, topic: str) -> set[int] | None:
        try:
            found = self._c.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise translate(exc) from exc
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    def _unpause(self, partitions: list[CkPartition]) -> None:
        """Forget every pause, and clear librdkafka's flag on the partitions given: it
        keeps a partition's pause across an unassign and a later assign."""
        self._paused.clear()
        if partitions:
            self._c.resume(partitions)

    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._eof.clear()
        try:
            partitions = [to_ck(tp, o) for tp, o in offsets.items()]
            self._unpause(partitions)
            self._c.assign(partitions)
        except KafkaException as exc:
            raise translate(exc) from exc

    def seek(self, partition: TopicPartition, offset: int) -> None:
        # librdkafka seeks only a partition it already fetches; assigning it again at
        # the offset works in every state, and drops what was fetched ahead.
        self._eof.pop(partition, None)
        try:
            self._c.incremental_unassign([to_ck(partition)])
            self._c.incremental_assign([to_ck(partition, offset)])
            if partition in self._paused:  # a seek leaves the partition as paused as it was
                self._c.pause([to_ck(partition)])
        except KafkaException as exc:
            raise translate(exc) from exc

    def position(self, partition: TopicPartition, timeout_s: float) -> int | None:
        try:
            position = self._c.position([to_ck(partition)])[0].offset
        except KafkaException as exc:
            raise translate(exc) from exc
        # The end of the partition, once reported, counts: past trailing transaction
        # markers no record moves the position.
        best = max(position, self._eof.get(partition, -1))
        return best if best >= 0 else None

    def watermarks(self, partitions: Iterable[TopicPartition], timeout_s: float,
                   ) -> dict[TopicPartition, tuple[int, int]]:
        found = {}
        try:
            for tp in partitions:
                found[tp] = tuple(self._c.get_watermark_offsets(to_ck(tp), timeout=timeout_s))
        except KafkaException as exc:
            raise translate(exc) from exc
        return found  # type: ignore[return-value]

    def offsets_for_times(self, times: Mapping[TopicPartition, int], timeout_s: float,
                          ) -> dict[TopicPartition, int | None]:
        try:
            found = self._c.offsets_for_times([to_ck(tp, ms) for tp, ms in times.items()],
                                              timeout=timeout_s)
        except KafkaException as exc:
            raise translate(exc) from exc
        return {to_port(tp): (tp.offset if tp.offset >= 0 else None) for tp in found}

    def close(self) -> None:
        self._c.close()
