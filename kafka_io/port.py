"""The Kafka port: the small interface the rest of streamrec uses, in its own types.

Two adapters implement it, `kafka_python/` (kafka-python, pure Python) and
`confluent/` (confluent-kafka over librdkafka, whose batching and network I/O run
on C threads outside the GIL); `clients.py` builds them with the settings that carry
the delivery guarantees and picks one (`--kafka-client`). Nothing outside
`streamrec.kafka_io` imports a client library, so the worker, the state, the tools
and the bench behave the same on either.

The contract both adapters keep:
- a consumed record has `topic`, `partition`, `offset`, `timestamp` (ms), `key`,
  `value` (bytes or None) and `headers` (list of (str, bytes));
- offsets committed, sent to a transaction or sought are the *next* offset to read;
- `send` never blocks on the network: its `Delivery` is filled in when the broker
  answers, seen after a `Producer.poll` or `Producer.flush` (librdkafka serves
  delivery reports only from those calls, so the worker's loop calls `poll`);
- rebalance callbacks run inside `Consumer.poll`, with the whole assignment
  (eager protocol) on assignment, and every client error is a `KafkaClientError`
  (`errors.py`) whatever the library raised, with authorization refusals named.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

ClientName = Literal["confluent", "kafka-python"]
ClientChoice = Literal["auto", "confluent", "kafka-python"]
CLIENT_CHOICES: tuple[ClientChoice, ...] = ("auto", "confluent", "kafka-python")


OFFSET_BEGINNING = -2  # `Consumer.assign`: from the partition's first offset
OFFSET_END = -1  # `Consumer.assign`: from its end (only what arrives from now on)


class TopicPartition(NamedTuple):
    """One partition of a topic (equal to kafka-python's, a plain tuple)."""

    topic: str
    partition: int


class Record(Protocol):
    """A consumed record, as both adapters hand it out."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch (create or log-append time)
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class ConsumedRecord(NamedTuple):
    """A record built by an adapter whose library has no attribute-style records."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class Delivery(Protocol):
    """What became of one sent record, once `done`: stored at `partition`/`offset`, or
    not stored after the client's retries (`error`, a `KafkaClientError`)."""

    @property
    def done(self) -> bool: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class DeliveryReport:
    """A `Delivery` filled in by a client's delivery callback.

    `done` turns true last, after `partition` and `offset` (or `error`), so a reader on
    another thread never sees a half-set answer.
    """

    __slots__ = ("done", "error", "offset", "partition")

    def __init__(self) -> None:
        self.done = False
        self.error: BaseException | None = None
        self.partition = -1
        self.offset = -1

    def acknowledged(self, partition: int, offset: int) -> None:
        """The broker stored the record at `partition`/`offset`."""
        self.partition, self.offset = partition, offset
        self.done = True

    def failed(self, error: BaseException) -> None:
        """The record was not stored after the client's retries."""
        self.error = error
        self.done = True


Partitions = list[TopicPartition]
Keyed = tuple[bytes | None, bytes | None, int]  # a record to send: key, value, partition
RebalanceCallback = Callable[[Partitions], None]


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the cluster describes it to this principal."""

    name: str
    partitions: int  # 0 when unknown or refused
    error: str | None = None  # None, "not_found" or "denied"
    authorized_operations: frozenset[str] | None = None  # None: the broker does not say


class Consumer(abc.ABC):
    """A consumer: in a group (`subscribe`) or reading assigned partitions (`assign`)."""

    client: ClientName
    # True when records keep arriving while nobody polls (librdkafka fetches on threads of
    # its own); kafka-python fetches only inside `poll`, which must then keep being called.
    fetches_in_background: bool = False
    # True when `commit` may run on another thread while the loop polls (librdkafka's
    # handle is thread-safe); kafka-python's consumer must stay on one thread.
    commits_from_any_thread: bool = False

    # -- in a group --------------------------------------------------------------

    @abc.abstractmethod
    def subscribe(
        self, topic: str, *, on_assigned: RebalanceCallback | None = None,
        on_revoked: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None,
    ) -> None:
        """Join the group for `topic`; the callbacks run inside `poll`."""

    @abc.abstractmethod
    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Record]]:
        """The records fetched, per partition, waiting at most `timeout_s` for some."""

    @abc.abstractmethod
    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""

    @abc.abstractmethod
    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch nothing more from `partitions` until resumed (they stay assigned)."""

    @abc.abstractmethod
    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch from `partitions` again."""

    @abc.abstractmethod
    def paused(self) -> set[TopicPartition]:
        """The partitions paused now."""

    @abc.abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the group's next offsets to read, synchronously."""

    @abc.abstractmethod
    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's high watermark as of the last fetch (None: not known yet)."""

    @abc.abstractmethod
    def group_metadata(self) -> Any:
        """The group's identity, for `Producer.send_offsets_to_transaction`."""

    # -- reading assigned partitions ------------------------------------------------

    @abc.abstractmethod
    def partitions_for(self, topic: str) -> set[int] | None:
        """The partition ids of `topic` (None: the topic does not exist)."""

    @abc.abstractmethod
    def assign(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Read exactly these partitions, each from the offset given (the next to read)."""

    @abc.abstractmethod
    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read an assigned partition on from `offset`."""

    @abc.abstractmethod
    def position(self, partition: TopicPartition, timeout_s: float) -> int | None:
        """The next offset this consumer will read from an assigned partition."""

    @abc.abstractmethod
    def watermarks(self, partitions: Iterable[TopicPartition], timeout_s: float,
                   ) -> dict[TopicPartition, tuple[int, int]]:
        """(first, end) offsets per partition; end is the last stable offset when reading
        committed data only."""

    @abc.abstractmethod
    def offsets_for_times(self, times: Mapping[TopicPartition, int], timeout_s: float,
                          ) -> dict[TopicPartition, int | None]:
        """Per partition, the first offset at or after the time (ms); None if none."""

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the group (committing nothing) and release the connections."""


class Producer(abc.ABC):
    """An idempotent producer; transactional when built with a transactional id."""

    client: ClientName

    @abc.abstractmethod
    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, *,
        partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
    ) -> Delivery:
        """Queue one record; its `Delivery` is filled in by a later `poll`/`flush`."""

    def send_many(self, topic: str, records: Iterable[Keyed]) -> list[Delivery]:
        """Queue (key, value, partition) records of one topic, in order; a `Delivery`
        each. The worker sends a batch's records this way: an adapter may loop tighter
        than `send` does per record (the default calls it)."""
        return [self.send(topic, value, key, partition=partition)
                for key, value, partition in records]

    @abc.abstractmethod
    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve the delivery reports that have arrived (waiting at most `timeout_s`)."""

    @abc.abstractmethod
    def flush(self, timeout_s: float = 120.0) -> bool:
        """Wait until every queued record is answered; False if some are not in time."""

    @abc.abstractmethod
    def partition_count(self, topic: str) -> int:
        """The number of partitions of `topic` (what key partitioning divides by)."""

    @abc.abstractmethod
    def init_transactions(self, timeout_s: float) -> None:
        """Fence older instances with this transactional id; abort their open work."""

    @abc.abstractmethod
    def begin_transaction(self) -> None:
        """Start a transaction: records sent from now on commit or abort together."""

    @abc.abstractmethod
    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float,
    ) -> None:
        """Commit the consumer group's next offsets with the open transaction."""

    @abc.abstractmethod
    def commit_transaction(self, timeout_s: float) -> None:
        """Commit the open transaction (flushing its records first)."""

    @abc.abstractmethod
    def abort_transaction(self, timeout_s: float) -> None:
        """Abort the open transaction: its records are never seen committed."""

    @abc.abstractmethod
    def rates(self) -> dict[str, float]:
        """Record retry and error rates per second, when the client measures them."""

    @abc.abstractmethod
    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is queued (up to `timeout_s`) and release the connections."""


class Admin(abc.ABC):
    """Topic administration and the questions the ACL check asks."""

    client: ClientName

    @abc.abstractmethod
    def list_topics(self) -> set[str]:
        """The names of the topics this principal may see."""

    @abc.abstractmethod
    def create_topic(self, name: str, partitions: int, replication_factor: int | None,
                     configs: Mapping[str, str]) -> bool:
        """Create a topic; False when it exists already (another worker won the race)."""

    @abc.abstractmethod
    def describe_topics(self, names: list[str]) -> dict[str, TopicInfo]:
        """Partitions, errors and the authorized operations of each topic."""

    @abc.abstractmethod
    def group_operations(self, group: str) -> frozenset[str] | None:
        """The operations this principal may do on `group` (None: not known)."""

    @abc.abstractmethod
    def may_write_transactional_id(self, transactional_id: str) -> bool | None:
        """Whether this principal may use the transactional id (None: cannot tell)."""

    @abc.abstractmethod
    def wait_for_topics(self, topics: list[str], timeout_s: float) -> None:
        """Until every partition of `topics` has a leader (KafkaUnavailableError past it)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connections."""


# Large enough for the biggest record a dead-letter copy may carry, plus headers.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ConsumerSettings:
    """How to build a consumer, in streamrec's terms; each adapter maps them.

    Fixed for every consumer: manual commits only, committed data only
    (`read_committed`), fetches large enough for the biggest record.
    """

    bootstrap: str
    group_id: str | None  # None: no group (assigned partitions only)
    client_id: str
    max_poll_records: int = 500
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    fetch_max_wait_ms: int = 500  # how long the broker may hold a fetch for more data
    max_partition_fetch_bytes: int = MAX_REQUEST_BYTES
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    allow_auto_create_topics: bool = False


@dataclass(frozen=True)
class ProducerSettings:
    """How to build a producer: idempotent, acks from every in-sync replica, retried
    until `delivery_timeout_ms` (a transactional one until its transaction times out,
    whichever is first: a record cannot outlive the transaction it belongs to)."""

    bootstrap: str
    client_id: str
    linger_ms: int = 5
    batch_bytes: int = 512 * 1024
    transactional_id: str | None = None
    delivery_timeout_ms: int = 120_000
    transaction_timeout_ms: int = 60_000  # Kafka's own default; the broker allows 15 min

    @property
    def record_timeout_ms(self) -> int:
        """How long one record is retried before its delivery fails."""
        if self.transactional_id is None:
            return self.delivery_timeout_ms
        return min(self.delivery_timeout_ms, self.transaction_timeout_ms)
