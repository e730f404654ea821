"""`OffsetReader`: scattered records read back in few seeks through one consumer."""

from __future__ import annotations

import itertools
import random

import pytest

from streamrec.kafka_io.clients import make_producer
from streamrec.kafka_io.topic_reader import OffsetReader
from tests.conftest import NewTopicFactory

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]


def test_reads_scattered_offsets_in_few_seeks_with_one_consumer(
    kafka_bootstrap: str, new_topic: NewTopicFactory,
) -> None:
    topic = new_topic(partitions=2)
    producer = make_producer(kafka_bootstrap, "offset-reader-test")
    for i in range(3000):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
    producer.flush()
    producer.close()

    reader = OffsetReader(kafka_bootstrap, topic, client_id="offset-reader-test", max_gap=64)
    try:
        rng = random.Random(7)
        wanted = sorted(rng.sample(range(1500), 200))
        found = reader.read(0, [*wanted, wanted[0]])  # duplicates are read once
        assert sorted(found) == wanted
        # Partition 0 holds records 0, 2, 4, ...: offset o has value v{2o}.
        assert all(found[o].value == f"v{2 * o}".encode() for o in wanted)
        runs = 1 + sum(1 for a, b in itertools.pairwise(wanted) if b - a > 64)
        assert reader.seeks <= runs < len(wanted)
        consumer = reader._consumer
        found = reader.read(1, [5, 1499])
        assert {o: r.value for o, r in found.items()} == {5: b"v11", 1499: b"v2999"}
        assert reader._consumer is consumer  # one long-lived consumer for every read
        assert consumer.assignment() == set()  # idle between reads: nothing fetched
        assert reader.read(0, []) == {}
    finally:
        reader.close()
