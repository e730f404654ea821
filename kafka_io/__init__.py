"""Kafka plumbing: client factories, TLS/SASL settings, topic readers, the local broker.

`clients.py` makes every consumer, producer and admin client with the same
`KafkaSecurity` (`security.py`) and checks the connection up front;
`topic_reader.py` reads partitions to their end or records at given offsets;
`local_broker.py` runs the single-node KRaft broker that the demo and tests use.
Nothing here knows events, histories or models.

May import: `streamrec.common` only.
"""
