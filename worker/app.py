"""The worker: the poll loop that drives every stage of the data flow.

    poll -> validate (bad -> dead letters) -> histories -> micro-batch   (ingest.py)
         -> model stage (encode + search, own thread)                   (model_stage.py)
         -> send recommendations and changelog records   (outbox.py, publish.py)
         -> every commit interval: commit offsets once every record
            sent before them is acknowledged                            (commits.py)

Offsets are never committed past an event whose user still waits (for a batch, in the
model stage or in the outbox), nor before every record sent ahead of them is acknowledged
(`commits.py`), so a crash at any point re-reads, and never skips, an event. `stop()` is
signal-safe: the loop finishes the batch in hand, drains the pending users, publishes,
waits for every acknowledgement, commits, closes and returns. Rebalances: `rebalance.py`;
model swaps: `swap.py`; stalls after `--max-stall-s`: `watchdog.py`; the way out
(`on_leaving`): `shutdown.py`. The item catalogue (`catalogue.py`) is read before
joining the group, then followed.

State: each batch writes its users' changed histories, as of the batch's cut, to the
changelog (`state/`) right after their recommendations; newly assigned partitions
are restored before their first event is applied. Backpressure: one batch is in the
model stage at a time (the next is cut when it comes out, and sent after it), at most
`pending_limit` users wait for a batch before fetching pauses, and Kafka's fetch
limits bound what the client buffers ahead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from streamrec.kafka_io.access import authorization_error
from streamrec.kafka_io.clients import (
    make_consumer,
    make_producer,
    resolve_client,
    subscribe_when_known,
)
from streamrec.kafka_io.errors import KafkaClientError
from streamrec.kafka_io.port import Consumer, Producer, TopicPartition
from streamrec.worker import heap
from streamrec.worker.backpressure import Backpressure
from streamrec.worker.batcher import MicroBatcher
from streamrec.worker.catalogue import LiveCatalogue
from streamrec.worker.commits import Commits
from streamrec.worker.config import WorkerConfig
from streamrec.worker.errors import PublishError, WorkerStalledError
from streamrec.worker.ingest import Ingest
from streamrec.worker.metrics import WorkerMetrics
from streamrec.worker.model_stage import ModelJob, ModelStage, switch_interval
from streamrec.worker.outbox import Outbox
from streamrec.worker.publish import PRODUCER_SETTINGS, Acked, Publisher
from streamrec.worker.rebalance import Ownership
from streamrec.worker.recommend import Recommender
from streamrec.worker.state.durable import DurableHistories
from streamrec.worker.swap import ModelSwap
from streamrec.worker.topics import prepare_topics
from streamrec.worker.watchdog import Stall, Watchdog, Work, records_available

logger = logging.getLogger(__name__)

LAG_REFRESH_S = 2.0
ACK_POLL_S = 0.005  # poll timeout while records await acknowledgement
MODEL_POLL_S = 0.002  # poll timeout while the model stage works on a batch
MODEL_WAIT_S = 0.005  # the longest wait for the model stage between polls (confluent)
INLINE_BATCH = 16  # batches of at most this many users are encoded on the poll loop's thread


class Worker:
    """One consumer-group member turning events into recommendations."""

    def __init__(
        self, config: WorkerConfig, recommender: Recommender | None = None,
        metrics: WorkerMetrics | None = None,
        on_leaving: Callable[[str], None] = lambda why: None,
    ) -> None:
        self.config = config
        self.recommender = recommender or Recommender.load(
            config.model_dir, config.device, config.index, config.torch_threads, config.ann,
            config.min_recall)
        self.metrics = metrics or WorkerMetrics()
        self.state = DurableHistories(
            self.recommender.max_len, self.recommender.checkpoint.vocab,
            bootstrap=config.bootstrap, group_id=config.group_id, security=config.security,
            max_users=config.max_users, max_unknown_items=config.max_unknown_items,
            restore_readers=config.restore_readers)
        self.batcher = MicroBatcher(config.max_batch, config.max_wait_ms)
        self.items = LiveCatalogue(config, self.metrics, lambda: self.state.items)
        self._stop = threading.Event()
        self._backpressure = Backpressure(config.pending_limit, self.metrics)
        self._on_leaving = on_leaving  # called from any thread, more than once
        self.phase = "starting"  # where run() is, for the log line of an abandoned exit
        self.stall: Stall | None = None  # set by the watchdog's thread
        self.watchdog = Watchdog(config.max_stall_s, config.group_id)
        self._available = 0  # records above the positions, as of the last lag refresh
        self.metrics_port: int | None = None
        self._metrics_server: Any = None
        # Built by run(), once the Kafka clients are:
        self._consumer: Consumer | None = None
        self._model: Any = None  # ModelStage
        self._publisher: Publisher | None = None
        self._ingest: Ingest | None = None
        self._outbox: Outbox | None = None
        self._commits: Commits | None = None
        self._ownership: Ownership | None = None
        self._on_assigned = self._assigned  # rebalance callbacks, run inside consumer.poll
        self._on_revoked = lambda tps: self._ownership.revoked(tps)
        self._on_lost = lambda tps: self._ownership.lost(tps)
        self.metrics.users.set_function(self.state.num_users)
        self.metrics.unknown_items_held.set_function(lambda: self.state.items.extra)
        self.metrics.pending.set_function(self._unanswered_users)
        self.metrics.stall_seconds.set_function(lambda: self.watchdog.waited_s())
        self.kafka_client = resolve_client()  # the adapter every client of this run uses
        self.models = ModelSwap(config, self.recommender, self.metrics, self.kafka_client,
                                self.state, self.items)

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and return (signal-safe)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Check the model repository now (SIGHUP; signal-safe)."""
        self.models.request()

    @property
    def ready(self) -> bool:
        """True once the items topic is read, partitions assigned and restored (/readyz)."""
        return (self.items.loaded and self._ownership is not None and self._ownership.ready
                and not self._stop.is_set())

    def run(self) -> None:
        """Run until `stop()`; always publishes, commits and closes on the way out."""
        cfg = self.config
        shown = dataclasses.asdict(cfg) | {"security": cfg.security.redacted()}
        logger.info("effective configuration: %s; Kafka client: %s",
                    json.dumps(shown, default=str, sort_keys=True), self.kafka_client)
        self.phase = "creating topics"
        prepare_topics(cfg, self.state)
        producer: Producer | None = None
        try:  # from the items thread's start on, the way out closes what was opened
            self.items.start()  # read while the clients are built; waited for before joining
            self.models.report()
            if cfg.metrics_port >= 0:
                self._metrics_server = self.metrics.serve(
                    cfg.metrics_port, cfg.metrics_host, ready=lambda: self.ready,
                    reload=self.request_reload, stalled=lambda: self.stall)
                self.metrics_port = self._metrics_server.server_port
            self.phase = "connecting to Kafka"
            producer = self._connect()  # a refusal here (init_transactions) is named too
            heap.settle("serving")
            self.phase = "serving"
            self._loop()
            if self.stall is not None:  # nothing is drained: the worker cannot progress
                raise WorkerStalledError(str(self.stall))
            self.phase = "draining (publishing pending users, committing)"
            self._drain()
        except (KafkaClientError, PublishError) as exc:  # e.g. an ACL revoked while running
            denied = authorization_error(exc, cfg.security, reads=[cfg.events_topic],
                                         group=cfg.group_id, transactional_id=cfg.transactional_id)
            if denied is None:
                raise
            if self._commits is not None:
                self._commits.halt()  # write and commit nothing more on the way out
            raise denied from exc
        finally:
            self._on_leaving("closing the Kafka clients")
            self.watchdog.stop()
            self._close(producer)
            heap.thaw()

    def _connect(self) -> Producer:
        """Build the clients and the stages on them, and join the group."""
        cfg = self.config
        producer = make_producer(
            cfg.bootstrap, cfg.client_id, cfg.security, **PRODUCER_SETTINGS,
            transactional_id=cfg.transactional_id if cfg.exactly_once else None)
        self.metrics.watch_producer(producer)
        self.metrics.inflight.set_function(
            lambda: self._publisher.inflight if self._publisher is not None else 0)
        self._publisher = Publisher(producer, cfg.recommendations_topic, cfg.dead_letter_topic,
                                    cfg.dead_letter_max_bytes, transactional=cfg.exactly_once)
        self.phase = "reading the items topic"
        self.items.wait_loaded(self._publisher, self._stop.is_set)
        self._outbox = Outbox(self._publisher, self.state, self.metrics,
                              lambda: self._ownership.owned, lambda: self.recommender,
                              cfg.explain_top, self.watchdog.progressed)
        self._ingest = Ingest(self.state, self.batcher, self._publisher, self.metrics,
                              limits=cfg.limits, event_types=cfg.event_types,
                              exactly_once=cfg.exactly_once)
        self._model = ModelStage(self.recommender, cfg.k, cfg.fresh_slots,
                                 switch_interval(self.kafka_client), cfg.index_threads)
        self._consumer = make_consumer(
            cfg.bootstrap, cfg.group_id, cfg.client_id, cfg.security,
            max_poll_records=cfg.poll_records,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(1000, cfg.session_timeout_ms // 3))
        self._commits = Commits(
            self._consumer, self._publisher, cfg.events_topic,
            interval_ms=cfg.commit_interval_ms, exactly_once=cfg.exactly_once,
            metrics=self.metrics, unanswered=self._unanswered_marks,
            publish_in_hand=self._publish_in_hand, on_acked=self._account,
            on_commit=self._apply_cap)
        self._ownership = Ownership(cfg.events_topic, self.state, self.batcher, self._commits,
                                    self.metrics, self.watchdog, stopping=self._stop.is_set)
        self.phase = "subscribing to the events topic"
        subscribe_when_known(self._consumer, cfg.events_topic, on_assigned=self._on_assigned,
                             on_revoked=self._on_revoked, on_lost=self._on_lost)
        self.watchdog.start(self._stalled)  # not joined: counted from now
        return producer

    def _loop(self) -> None:
        next_lag, gap = 0.0, self.metrics.poll_gap  # gap: the longest time between polls
        while not self._stop.is_set():
            start = gap.polling()
            polled = self._poll()
            self.metrics.stage_seconds.labels("poll").observe(gap.polled() - start)
            for tp, records in polled.items():
                if not self._ownership.serves(tp.partition):
                    continue  # revoked, or its restore was left at a stop
                self._ingest.apply(tp, records, self.recommender.model_version)
                self._commits.consumed_up_to(tp.partition, records[-1].offset + 1)
            if polled:
                self.watchdog.progressed()
            self.items.poll(self._publisher)  # what the items thread read: never waits
            self._advance()
            self.models.poll()
            self._backpressure.update(len(self.batcher), self._consumer)
            self._commits.update()
            if time.monotonic() >= next_lag:
                self.metrics.update_lag(self._consumer, self._commits.consumed)
                self._available = records_available(self._consumer)
                next_lag = time.monotonic() + LAG_REFRESH_S
            self._report_waits()

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions assigned: restored (`rebalance.py`), paused if fetching is."""
        self._backpressure.assigned()
        self._ownership.assigned(partitions)

    def _report_waits(self) -> None:
        """Tell the watchdog what waits: work, and offsets whose commits fail."""
        c = self._commits
        self.watchdog.work(Work(self._available, self._unanswered_users(),
                                self._publisher.inflight))
        self.watchdog.commits(c.failing_since if c.uncommitted() else None, c.last_error)

    def _stalled(self, stall: Stall) -> None:
        """The watchdog's verdict (on its thread): stop, and say why."""
        self.stall = stall
        self.metrics.stalled.set(1)
        logger.error("%s (%s); stopping so that a supervisor restarts the worker", stall,
                     self.watchdog.describe())
        self._stop.set()
        self._on_leaving(str(stall))

    def describe(self) -> str:
        """Where the worker is and what it holds (an abandoned exit logs it)."""
        c = self._commits
        offsets = (f"; offsets committed {c.committed.copy()} of consumed {c.consumed.copy()}"
                   if c is not None else "")
        return f"{self.phase}; {self.watchdog.describe()}{offsets}"

    def _poll(self) -> dict[TopicPartition, list[Any]]:
        """The records fetched. While the model stage works and the client fetches on its
        own threads, wait for the stage first (the GIL free for it) and then take every
        record that came meanwhile, instead of waking on each record as it arrives; or
        none, while enough users wait (`Backpressure.holds`). While a batch is part-way
        out, only what came meanwhile: its next slice is due."""
        if self._model.busy and self._consumer.fetches_in_background:
            if not self._outbox.busy:
                self._model.wait(MODEL_WAIT_S)
            if self._backpressure.holds(len(self.batcher)):
                return {}
            timeout = 0.0
        elif self._outbox.busy:
            timeout = 0.001
        else:
            timeout = self._poll_timeout_s()
        self._backpressure.polled()
        return self._consumer.poll(timeout)

    def _poll_timeout_s(self) -> float:
        """Block up to 0.5 s when idle; less while users wait for their batch, while
        acknowledgements are due (they are counted when they arrive) or a commit is."""
        wait = 0.5
        if self._model.busy:
            wait = min(wait, MODEL_POLL_S)
        elif self.batcher:
            wait = min(wait, self.batcher.wait_time())
        if self._publisher.inflight:
            wait = min(wait, ACK_POLL_S)
        return max(0.001, min(wait, self._commits.until_due()))

    def _drain(self) -> None:
        """Publish every pending user and commit: the graceful part of shutdown."""
        while self.batcher or self._model.busy or self._outbox.busy:
            self._advance(drain=True)
        self._commits.commit_now()
        logger.info("drained and committed %s", self._commits.committed)

    def _close(self, producer: Producer | None) -> None:
        self.phase = "closing the consumer (leaving the group)"
        if self._commits is not None:
            self._commits.close()
        if self._consumer is not None:
            self._consumer.close()
        if self._model is not None:
            self._model.close()
        self.models.close()
        self.items.close()
        self.state.close()
        self.phase = "closing the producer"
        if producer is not None:
            producer.close(30)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        logger.info("worker stopped")

    def _advance(self, drain: bool = False) -> None:
        """Take the batch the model stage finished, hand it the next one when due, then
        publish the finished one (a slice per turn, `outbox.py`) while the model works.

        The stage holds one batch at a time; batches are published in the order they
        were cut, the next taken once the last is all out, so each user's
        recommendations follow its events. A model swap waits for the finished batch
        to go out (old rows) and takes the next loop turn on its own. `drain` waits for
        the stage, cuts batches without waiting and sends whole batches (shutdown).
        """
        outbox = self._outbox
        if outbox.busy:
            outbox.send(everything=drain)
            if outbox.busy:
                return  # its next slice after the next poll
        done: ModelJob | None = None
        if self._model.busy:
            done = self._model.take(timeout_s=None if drain else 0.0)
            if done is None:
                return
        if self.models.due:  # between two batches: the stage is empty
            if done is not None:  # the old model's rows go out; the swap gets a turn alone
                outbox.put(done, everything=drain)
                return
            self.recommender = self.models.swap(self.state, self._model)
        self.items.apply_to(self.recommender)  # the stage is empty: retired items, new model
        job = None
        if (self.batcher.ready() and not self._ownership.suspended) or (drain and self.batcher):
            batch = self.batcher.take()
            self.metrics.batch_size.observe(len(batch))
            keys = [(b.partition, b.user_id) for b in batch]
            histories, lengths = self.state.rows(keys)
            job = ModelJob(batch, histories, lengths, self.state.take_changes(keys))
            if len(batch) > INLINE_BATCH:  # the model thread works on it while `done` goes out
                self._model.submit(job)
                job = None
        if done is not None:
            outbox.put(done, everything=drain)
        if job is not None:  # small: no overlap worth a thread hand-off; computed here
            if outbox.busy:  # unless `done` is still going out: it goes first
                self._model.submit(job)
            else:
                self._model.submit(job, inline=True)
                outbox.put(self._model.take(), everything=drain)  # type: ignore[arg-type]

    def _unanswered_users(self) -> int:
        """Users waiting for their recommendation: pending, in the model stage or the outbox."""
        started = self._model is not None  # the stage and the outbox exist once it runs
        return len(self.batcher) + (len(self._model.batch) + self._outbox.users if started else 0)

    def _unanswered_marks(self) -> dict[int, int]:
        """Per partition, the lowest offset of those users: commits stay below it."""
        marks = self._model.low_watermarks(self.batcher.low_watermarks())
        return self._outbox.low_watermarks(marks)

    def _publish_in_hand(self) -> None:
        """Publish the batch going out and the one in the model stage (a blocking commit)."""
        self._outbox.send(everything=True)
        if self._model.busy:
            self._outbox.put(self._model.take(timeout_s=None), everything=True)  # type: ignore[arg-type]

    def _account(self, acked: Acked) -> None:
        """Count acknowledged records and note the changelog records now stored."""
        if acked:
            self.metrics.count_acked(acked)
            self.state.note_written(acked.changelog)
            self.watchdog.progressed()

    def _apply_cap(self) -> None:
        """After a commit point: apply the user cap (evicting only users in the changelog)."""
        if self.config.max_users:
            self.metrics.evicted.inc(self.state.evict())
            users, nbytes = self.state.evicted_users()
            self.metrics.evicted_index_users.set(users)
            self.metrics.evicted_index_bytes.set(nbytes)
