"""kafka-python behind the Kafka port (`port.py`): the pure-Python adapter.

kafka-python builds and parses records in Python and runs its network I/O on a
thread of its own, so it holds the GIL for much of what it does; users asked to
keep it, and it needs no native library. Its records already carry the port's
attributes and its topic partitions are tuples equal to the port's, so consumed
records pass through as they are. A bootstrap that times out is reported with the
last connection failure kafka-python logged (it otherwise says only "Unable to
bootstrap"); every error it raises leaves here as a `KafkaClientError`.
"""
