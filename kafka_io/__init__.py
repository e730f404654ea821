"""Kafka plumbing: client factories, TLS/SASL settings, topic readers; the local broker apart.

`port.py` is the interface the rest of the code uses, in the project's own types
(topic partition, record, delivery, consumer, producer, admin); `kafka_python/` and
`confluent/` are its two adapters, one module per role. `clients.py` chooses the
adapter (`--kafka-client`) and makes every consumer, producer and admin client with
the same `KafkaSecurity` (`security.py`); `probe.py` checks TLS and SASL up front,
`access.py` the ACLs, `errors.py` holds the port's errors and `partitioner.py` the
key-to-partition hash both adapters share. `topic_reader.py` reads partitions to
their end or records at given offsets. `local/` holds the single-node KRaft broker
and the 3-node cluster that the demo and tests use, apart from the production path.
Only the adapters import a Kafka client library (`tests/unit/test_layering.py`).
Nothing here knows events, histories or models.

May import: `streamrec.common` only.
"""
