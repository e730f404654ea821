"""The worker's one typed, frozen configuration.

Built once by the CLI from flags, `STREAMREC_*` environment variables and the
defaults below, then passed down; library code never sees argparse. Defaults run
against a local broker.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.index.params import AnnParams
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.state.items import DEFAULT_MAX_EXTRA
from streamrec.worker.validate import EventFilter, Limits

POLL_RECORDS_MIN = 500  # a poll's records when --max-batch is small


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker needs to run; see `streamrec worker --help`."""

    model_dir: Path
    bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "events"
    recommendations_topic: str = "recommendations"
    dead_letter_topic: str = "events.dlq"
    items_topic: str = "items"  # the compacted item catalogue every worker reads whole
    group_id: str = "streamrec"
    client_id: str = "streamrec-worker"
    k: int = 10  # items per recommendation
    max_batch: int = 1024  # users per encoder batch (at most; live batches are what arrived)
    max_wait_ms: float = 2.0  # longest a changed user waits for its batch
    # Users waiting for a batch before the consumer pauses (resumes at half): keeps a
    # backlog in Kafka, not in memory, and bounds memory under --max-users. 0 = 16
    # batches, or two polls' records when that is more (`pending_limit`).
    max_pending: int = 0
    partitions: int = 3  # partitions for topics the worker creates
    replication_factor: int | None = None  # of topics the worker creates; None = broker default
    metrics_port: int = 9108  # 0 = any free port; -1 = no metrics server
    metrics_host: str = "0.0.0.0"
    device: str = "auto"  # torch device for the encoder: auto, cpu, cuda, cuda:1
    model_check_s: float = 10.0  # how often a model repository's CURRENT is checked (0: never)
    # item index: auto, torch (exact), faiss (exact flat), or an approximate kind
    # (ivf, ivf-sq8, ivf-pq, hnsw, sq8, pq) with `ann`'s parameters, refused below `min_recall`
    index: str = "auto"
    ann: AnnParams = field(default_factory=AnnParams)
    min_recall: float = 0.9  # recall@10 against exact search, measured at load
    torch_threads: int = 1  # encoder/index threads on a CPU (0 = torch's default: all cores)
    index_threads: int = 0  # FAISS's threads on the model thread (0 = every core)
    restore_readers: int = 0  # processes reading a large changelog restore (0 = one per core)
    explain_top: int = 3  # history items listed in the explanation
    fresh_slots: int = 0  # of the k places, kept for items recommended by their content
    max_users: int = 0  # users kept in memory per partition (0 = no cap); rest in changelog
    # Distinct items unknown to the serving model kept in histories (~200 bytes each).
    max_unknown_items: int = DEFAULT_MAX_EXTRA
    # Offset commits (and, with exactly-once, transactions); records are acknowledged as
    # they arrive, whenever the loop turns.
    commit_interval_ms: float = 1000.0
    session_timeout_ms: int = 10_000  # a crashed worker's partitions move after this long
    # A worker that cannot join its group, commit, or make progress on work waiting for
    # this long stops (worker/watchdog.py); 0 = never.
    max_stall_s: float = 60.0
    # SIGTERM (or a stall, or an error) ends the process within this long, drained or
    # not (worker/shutdown.py); Kubernetes' default grace is 30 s, deploy/k8s gives 60.
    shutdown_timeout_s: float = 30.0
    # One Kafka transaction per commit interval: recommendations, dead letters,
    # changelog records and offsets commit together.
    exactly_once: bool = False
    instance_id: str = field(default_factory=socket.gethostname)  # stable per worker instance
    dead_letter_max_bytes: int = 4 * 1024 * 1024  # larger bad records are truncated
    limits: Limits = field(default_factory=Limits)
    # --event-types allow-list (None = every type); build the EventFilter from it
    event_types: frozenset[str] | None = None
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @property
    def pending_limit(self) -> int:
        """Pending users at which the consumer pauses (at least one full batch).

        The default is at least two polls' records, so the poll that `Backpressure`'s
        hold lets through (below half the limit) never reaches it: a paused librdkafka
        consumer drops what it fetched. With 16 batches alone, `--max-batch 16` (limit
        256, polls of 500) paused on every poll: 1,010 events/s, 2,965 with this one.
        """
        default = max(16 * self.max_batch, 2 * POLL_RECORDS_MIN)  # polls: <= 4 batches
        return max(self.max_pending or default, self.max_batch)

    @property
    def poll_records(self) -> int:
        """Records one poll hands over: four batches (at least POLL_RECORDS_MIN), and no
        more than half of `pending_limit`, so a poll from the hold stays under it."""
        return max(1, min(max(POLL_RECORDS_MIN, 4 * self.max_batch), self.pending_limit // 2))

    @property
    def transactional_id(self) -> str:
        """Stable across restarts of this instance, so a restart fences its zombie."""
        return f"{self.group_id}-{self.instance_id}"

    def __post_init__(self) -> None:
        if not 0 <= self.fresh_slots <= self.k:
            raise ValueError(f"fresh_slots must be in [0, k={self.k}], got {self.fresh_slots}")
        if self.max_unknown_items < 0:
            raise ValueError(f"max_unknown_items must be >= 0, got {self.max_unknown_items}")
        if self.max_pending < 0:
            raise ValueError(f"max_pending must be >= 0, got {self.max_pending}")
        if self.restore_readers < 0:
            raise ValueError(f"restore_readers must be >= 0, got {self.restore_readers}")
        for name in ("k", "max_batch", "partitions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.replication_factor is not None and self.replication_factor < 1:
            raise ValueError(f"replication_factor must be >= 1, got {self.replication_factor}")
        if self.max_stall_s < 0:
            raise ValueError(f"max_stall_s must be >= 0 (0 = never), got {self.max_stall_s}")
        if self.shutdown_timeout_s <= 0:
            raise ValueError(f"shutdown_timeout_s must be > 0, got {self.shutdown_timeout_s}")
        if not 0.0 <= self.min_recall <= 1.0:
            raise ValueError(f"min_recall must be within [0, 1], got {self.min_recall}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if len({self.events_topic, self.recommendations_topic, self.dead_letter_topic,
                self.items_topic}) != 4:
            raise ValueError("events, recommendations, dead-letter and items topics must differ")
        EventFilter(self.event_types)  # refuses an empty allow-list (ConfigError)
