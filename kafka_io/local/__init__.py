"""The local development Kafka: a room of its own, never the production path.

The single-node KRaft broker (`broker.py`) and the 3-node cluster (`cluster.py`)
that the demo, `streamrec broker` and the integration tests start from the Maven
jars that `deploy/setup.sh` fetches, with their settings and rendered properties
(`config.py`) and the small questions they ask the machine (`probes.py`: Java,
ports, pids, metadata). The worker and everything it serves in production reach a
real cluster through the rest of `kafka_io` and import nothing from here.

May import: `streamrec.common` and `streamrec.kafka_io.errors` only.
"""
