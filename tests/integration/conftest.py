"""Fixtures of the integration tests: a small real checkpoint, fresh topic names, and a
broker of a test's own (for tests that stop it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streamrec.encoder.checkpoint import save_checkpoint
from streamrec.encoder.config import ModelConfig
from streamrec.encoder.model import SASRec
from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.kafka_io.local.config import BrokerConfig
from tests.conftest import TOPIC_READY_TIMEOUT_MS, NewTopicFactory, free_port


def write_checkpoint(path: Path, max_len: int, items: int = 40, seed: int = 0) -> Path:
    """A real (untrained, seeded) checkpoint over items i1..i<items>."""
    torch.manual_seed(seed)
    model = SASRec(ModelConfig(num_items=items, max_len=max_len, hidden=16, blocks=1, heads=1,
                               dropout=0.0, emb_dropout=0.0)).eval()
    vocab = ItemVocab([f"i{n}" for n in range(1, items + 1)])
    popularity = np.concatenate([[0.0], np.arange(items, 0, -1)]).astype(np.float32)
    save_checkpoint(path, model, vocab, popularity, meta={"data": "integration fixture"})
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Items i1..i40, history length 8."""
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny", max_len=8)


@pytest.fixture(scope="session")
def long_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Items i1..i40, history length 64: a whole test stream per user fits in history."""
    return write_checkpoint(tmp_path_factory.mktemp("model") / "long", max_len=64)


@pytest.fixture
def topics(new_topic: NewTopicFactory) -> dict[str, str]:
    """Fresh topic and group names; the events topic (3 partitions) takes 4 MB records.

    The worker creates the recommendations and dead-letter topics itself.
    """
    suffix = uuid.uuid4().hex[:8]
    events = new_topic(partitions=3, configs={"max.message.bytes": str(4 * 1024 * 1024)},
                       prefix="events")
    return {"events": events, "recs": f"recs-{suffix}", "dlq": f"dlq-{suffix}",
            "group": f"group-{suffix}"}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test alone, which the test may stop (and start again)."""
    broker = LocalBroker(BrokerConfig(port=free_port(), controller_port=free_port(),
                                      data_dir=tmp_path / "kafka"))
    broker.start(timeout_s=180)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_topics(own_broker: LocalBroker) -> dict[str, str]:
    """Fresh names on `own_broker`, its events topic (3 partitions) created; the worker
    creates the recommendations and dead-letter topics itself."""
    suffix = uuid.uuid4().hex[:8]
    topics = {"events": f"events-{suffix}", "recs": f"recs-{suffix}", "dlq": f"dlq-{suffix}",
              "group": f"group-{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=own_broker.config.bootstrap)
    admin.create_topics([NewTopic(topics["events"], 3, 1)])
    admin.wait_for_topics([topics["events"]], timeout_ms=TOPIC_READY_TIMEOUT_MS)
    admin.close()
    return topics
