"""The topics the worker reads and writes, checked and created before it serves.

A worker that lacks an ACL should say so at once, naming it, rather than fail on its
first fetch or send; the operations asked for here are the table of
docs/RELIABILITY.md ("Security: the ACLs the worker needs"), which
`tests/integration/test_sasl_acl.py` reads. The output topics get the events topic's
partition count (`--partitions`) and the dead-letter topic room for the largest record
it may carry; the changelog is compacted, with as many partitions as the events topic.
The items topic, read by the worker, is created when missing like the events topic,
compacted and keeping tombstones (`item_records.ITEMS_TOPIC_CONFIG`).
"""

from __future__ import annotations

import logging

from streamrec.kafka_io.access import check_access
from streamrec.kafka_io.clients import ensure_topics
from streamrec.kafka_io.port import MAX_REQUEST_BYTES
from streamrec.worker.config import WorkerConfig
from streamrec.worker.item_records import ITEMS_TOPIC_CONFIG
from streamrec.worker.state.durable import DurableHistories

logger = logging.getLogger(__name__)


def prepare_topics(cfg: WorkerConfig, state: DurableHistories) -> None:
    """Check the worker's ACLs (a `KafkaAuthorizationError` names every one missing),
    then create the topics that do not exist yet."""
    check_access(cfg.bootstrap, cfg.security, {
        cfg.events_topic: ("READ",), cfg.items_topic: ("READ",),
        cfg.recommendations_topic: ("WRITE",), cfg.dead_letter_topic: ("WRITE",),
        state.topic: ("READ", "WRITE")},
        group=cfg.group_id, transactional_id=cfg.transactional_id if cfg.exactly_once else None)
    ensure_topics(
        cfg.bootstrap,
        {cfg.events_topic: cfg.partitions, cfg.items_topic: cfg.partitions,
         cfg.recommendations_topic: cfg.partitions, cfg.dead_letter_topic: cfg.partitions},
        configs={cfg.dead_letter_topic: {"max.message.bytes": str(MAX_REQUEST_BYTES)},
                 cfg.items_topic: ITEMS_TOPIC_CONFIG},
        security=cfg.security, replication_factor=cfg.replication_factor,
    )
    state.ensure_topic(cfg.events_topic, cfg.replication_factor)
