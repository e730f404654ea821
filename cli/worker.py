"""`streamrec worker`: run the recommender worker against a Kafka cluster."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from streamrec.cli.flags import (
    add_event_types_flag,
    add_index_flags,
    add_kafka_flags,
    add_replication_flag,
    ann_from_args,
    env_flag,
    parse_event_types,
    security_from_args,
)
from streamrec.common.errors import ConfigError
from streamrec.common.settings import env_default
from streamrec.worker.config import WorkerConfig
from streamrec.worker.validate import Limits

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec worker`."""
    defaults = WorkerConfig(model_dir=Path("."))
    p = sub.add_parser(
        "worker", help="consume events, publish recommendations",
        description="Consume events, keep per-user histories, publish recommendations. "
                    "Every flag can also be set as STREAMREC_<FLAG> (e.g. STREAMREC_MAX_BATCH).")
    add_kafka_flags(p)

    def flag(name: str, default: object, help_text: str, kind: type = str) -> None:
        env_flag(p, name, default, help_text, kind)

    flag("--model", None, "checkpoint directory written by `streamrec train`, or a model "
         "repository (`train --repo`): its current version, hot-reloaded", str)
    flag("--events-topic", defaults.events_topic, "topic to consume events from")
    flag("--recommendations-topic", defaults.recommendations_topic, "topic to publish to")
    flag("--dead-letter-topic", defaults.dead_letter_topic, "topic for rejected records")
    flag("--items-topic", defaults.items_topic,
         "compacted item catalogue, read whole before the worker is ready and followed: "
         "retired items are never recommended (docs/CONTRACTS.md, \"Item\")")
    flag("--group-id", defaults.group_id, "consumer group id")
    flag("--client-id", defaults.client_id, "Kafka client id")
    flag("--k", defaults.k, "items per recommendation", int)
    flag("--max-batch", defaults.max_batch, "most users per encoder batch", int)
    flag("--max-wait-ms", defaults.max_wait_ms, "longest a changed user waits for a batch "
         "while the model is idle (while it works, the next batch gathers anyway)", float)
    flag("--max-pending", defaults.max_pending,
         "users waiting for a batch at which fetching pauses (resumes at half; "
         "0 = 16 x --max-batch, at least 1,000)", int)
    flag("--partitions", defaults.partitions, "partitions of topics the worker creates", int)
    add_replication_flag(p)
    flag("--metrics-port", defaults.metrics_port, "port of /metrics (0 = any, -1 = off)", int)
    flag("--metrics-host", defaults.metrics_host, "address the metrics server binds")
    flag("--device", defaults.device, "torch device of the encoder: auto, cpu, cuda")
    flag("--model-check-s", defaults.model_check_s,
         "how often a model repository (--model REPO) is checked for a new current "
         "version, swapped in between batches (0 = never; SIGHUP checks at once)", float)
    add_index_flags(p, defaults.index)
    flag("--min-recall", defaults.min_recall,
         "refuse an approximate index whose recall@10 against exact search, measured at "
         "load, is below this (a refused hot swap keeps the old model serving)", float)
    flag("--torch-threads", defaults.torch_threads,
         "CPU threads of the encoder and index (0 = torch's default, every core)", int)
    flag("--index-threads", defaults.index_threads,
         "FAISS's threads for the model stage's searches (0 = every core); --torch-threads "
         "sets them everywhere else", int)
    flag("--restore-readers", defaults.restore_readers,
         "processes reading a large changelog restore, a share of the partitions each "
         "(0 = one per core, 1 = in the worker's own process)", int)
    flag("--max-record-bytes", defaults.limits.max_record_bytes,
         "larger event records go to the dead-letter topic", int)
    flag("--max-id-chars", defaults.limits.max_id_chars, "longest accepted user/item id", int)
    add_event_types_flag(p, "events of other types are counted and skipped, not dead-lettered")
    flag("--max-users", defaults.max_users,
         "users kept in memory per partition, least recently active evicted (0 = no cap)", int)
    flag("--fresh-slots", defaults.fresh_slots,
         "of the k recommendations, places kept for the best items the model does not know "
         "and recommends by their features (items topic + content tower) when they do not "
         "make it on score (0 = ranked by score alone)", int)
    flag("--max-unknown-items", defaults.max_unknown_items,
         "distinct items unknown to the serving model kept in histories (~200 bytes each; "
         "the encoder masks them until a model that knows them is served)", int)
    flag("--session-timeout-ms", defaults.session_timeout_ms,
         "consumer-group session timeout: how soon a crashed worker's partitions move", int)
    flag("--max-stall-s", defaults.max_stall_s,
         "a worker that cannot join its group, commit, or make progress on records, "
         "users or acknowledgements waiting for it for this long exits with code 3 "
         "(an idle topic is not a stall; 0 = never)", float)
    flag("--shutdown-timeout-s", defaults.shutdown_timeout_s,
         "SIGTERM (or a stall, or an error) ends the process within this long: what is "
         "not drained by then is abandoned, uncommitted, with exit code 4", float)
    flag("--commit-interval-ms", defaults.commit_interval_ms,
         "how often offsets are committed, and with --exactly-once each transaction "
         "(records are acknowledged as they arrive)", float)
    flag("--instance-id", defaults.instance_id,
         "stable name of this worker instance (transactional id suffix)")
    p.add_argument("--exactly-once", action="store_true",
                   default=env_default("--exactly-once", False),
                   help="one Kafka transaction per commit interval: its recommendations, "
                        "dead letters, changelog records and offsets commit together "
                        "(env STREAMREC_EXACTLY_ONCE)")
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    """The typed worker config for parsed flags."""
    if not args.model:
        raise ConfigError("--model (or STREAMREC_MODEL) is required: a checkpoint directory")
    try:
        return WorkerConfig(
            model_dir=Path(args.model), bootstrap=args.bootstrap,
            events_topic=args.events_topic, recommendations_topic=args.recommendations_topic,
            dead_letter_topic=args.dead_letter_topic, items_topic=args.items_topic,
            group_id=args.group_id,
            client_id=args.client_id, k=args.k, max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms, max_pending=args.max_pending,
            partitions=args.partitions,
            replication_factor=args.replication_factor,
            metrics_port=args.metrics_port, metrics_host=args.metrics_host, device=args.device,
            model_check_s=args.model_check_s,
            index=args.index, ann=ann_from_args(args), min_recall=args.min_recall,
            torch_threads=args.torch_threads, index_threads=args.index_threads,
            restore_readers=args.restore_readers,
            max_users=args.max_users, max_unknown_items=args.max_unknown_items,
            fresh_slots=args.fresh_slots,
            exactly_once=args.exactly_once,
            instance_id=args.instance_id, commit_interval_ms=args.commit_interval_ms,
            session_timeout_ms=args.session_timeout_ms,
            max_stall_s=args.max_stall_s, shutdown_timeout_s=args.shutdown_timeout_s,
            limits=Limits(max_record_bytes=args.max_record_bytes, max_id_chars=args.max_id_chars),
            event_types=parse_event_types(args.event_types),
            security=security_from_args(args),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Run the worker until SIGTERM/SIGINT; the process ends within --shutdown-timeout-s
    of the first one, or of a stall or error (`worker/shutdown.py`)."""
    from streamrec.worker.app import Worker  # heavy imports (torch) only when running
    from streamrec.worker.errors import WorkerStalledError
    from streamrec.worker.shutdown import (
        EXIT_ABANDONED,
        EXIT_STALLED,
        ExitGuard,
        forward_signals,
    )

    config = config_from_args(args)
    guard = ExitGuard(config.shutdown_timeout_s)
    worker = Worker(config, on_leaving=lambda why: guard.arm(
        why, EXIT_STALLED if worker.stall is not None else EXIT_ABANDONED))
    guard.describe = worker.describe
    signals: list[str] = []

    def stop(signum: int) -> None:
        name = signal.Signals(signum).name
        signals.append(name)
        if len(signals) > 1:
            guard.abandon(f"{name} after {signals[0]}", 128 + signum)
            return
        logger.info("%s: finishing the batch in hand, publishing and committing, then "
                    "exiting (at most %gs; a second signal exits at once)",
                    name, config.shutdown_timeout_s)
        worker.stop()
        guard.arm(name)

    restore_signals = forward_signals({signal.SIGTERM: stop, signal.SIGINT: stop,
                                       signal.SIGHUP: lambda _signum: worker.request_reload()})
    try:
        worker.run()
    except WorkerStalledError as exc:
        logger.error("exiting with code %d: %s", EXIT_STALLED, exc)
        return EXIT_STALLED
    finally:  # out of the run in time: no deadline, and the signals as they were
        guard.disarm()
        restore_signals()
    return 0
