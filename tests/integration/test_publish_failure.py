"""A record that cannot be published is never skipped: the worker stops uncommitted.

The recommendations topic here refuses records over 64 bytes, so every
recommendation fails for good (not retriable). The worker must raise PublishError,
count the failures, and commit nothing past the first event of any partition, so
a fixed deployment re-reads every event. (A commit of offset 0 is allowed: with
librdkafka the first commit interval can end before the broker's refusals arrive,
and offset 0 is exactly "nothing read yet".)
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.errors import PublishError
from tests.conftest import NewTopicFactory
from tests.integration.helpers import committed_offsets, event, metric_sum, producer

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]


def test_unpublishable_recommendations_stop_the_worker_without_committing(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str],
    new_topic: NewTopicFactory,
) -> None:
    recs = new_topic(partitions=1, configs={"max.message.bytes": "64"}, prefix="tiny-recs")
    p = producer(kafka_bootstrap)
    for u in range(5):
        key, value = event(f"user-{u}", "i3")
        p.send(topics["events"], key=key, value=value)
    p.flush()
    p.close()
    worker = Worker(WorkerConfig(
        model_dir=tiny_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=recs, dead_letter_topic=topics["dlq"], group_id=topics["group"],
        metrics_port=-1, device="cpu"))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the worker kept running past unpublishable records"
    assert len(errors) == 1
    assert isinstance(errors[0], PublishError)
    samples = {s.name + str(s.labels): s.value for m in worker.metrics.registry.collect()
               for s in m.samples}
    assert metric_sum(samples, "streamrec_publish_failures_total") >= 1
    committed = committed_offsets(kafka_bootstrap, topics["group"], topics["events"])
    assert set(committed.values()) <= {0}, f"committed past unpublished events: {committed}"
