"""confluent-kafka (librdkafka) behind the Kafka port (`port.py`): the fast adapter.

librdkafka batches, compresses and does its network I/O on C threads outside the
GIL, so the worker's loop spends its Python time on its own work. Its habits are
kept, not worked around:
- delivery reports (and error and statistics callbacks) fire only inside
  `poll`/`flush`, so `Producer.poll` is what the worker's loop calls to see them;
- a poll waits only until the first record (librdkafka's batch `consume` would hold
  records for its whole timeout), then takes whatever else is ready;
- rebalance callbacks run inside `poll`; the eager `range` assignor hands each
  callback the whole assignment, as kafka-python does, and the assignment is made
  when the callback returns;
- keys are partitioned with `murmur2_random`, the Java client's (and kafka-python's)
  partitioner, so a user's events land in the same partition whichever client wrote
  them (librdkafka's own default hashes with CRC32);
- `socket.nagle.disable`: records go out when the batch is due, not 40 ms later;
- a consumer outside any group reports the end of a partition (`enable.partition.eof`),
  which is how a read to the end knows it is done past transaction markers.
A client that reaches no broker at construction raises `KafkaUnavailableError`
naming the last error librdkafka reported, and every other failure leaves here as a
`KafkaClientError`.
"""
