"""Interaction logs and the events topic, in both directions.

`replay.py` produces a log's interactions into the events topic (demo, load tests,
backfills); `topic_log.py` reads an events topic back as training data, validated
with the worker's own event contract; `online.py` measures live quality afterwards
from the events and recommendations topics (each event judged against the last
recommendation before it); `items.py` produces a catalogue file into the items
topic. Used by the CLI and the benchmarks; the streaming pipeline does not need it.

May import: `streamrec.worker` (the event contract), `streamrec.encoder` (the
interaction log type), `streamrec.kafka_io`, `streamrec.common`.
"""
