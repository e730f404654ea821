"""Kafka plumbing: client factories, TLS/SASL settings, topic readers; the local broker apart.

`clients.py` makes every consumer, producer and admin client with the same
`KafkaSecurity` (`security.py`) and checks the connection up front;
`topic_reader.py` reads partitions to their end or records at given offsets;
`local/` holds the single-node KRaft broker and the 3-node cluster that the demo
and tests use, apart from the production path.
Nothing here knows events, histories or models.

May import: `streamrec.common` only.
"""
