"""The streaming pipeline: Kafka events in, recommendations out, state kept durable.

The modules, in the order an event meets them:

    app.py          the poll loop that drives every stage (and the rebalance callbacks)
    validate.py     decode + the event contract; bad records -> dead-letter topic
    state/          per-user histories: partition.py (one partition, in memory),
                    changelog.py (record format, restore), durable.py (both together)
    batcher.py      micro-batches of changed users, one query per user
    backpressure.py pause fetching while too many users wait for a batch
    recommend.py    encoder (torch) + index search with exclusions, cold start
    model_stage.py  the recommender on its own thread, overlapping with Kafka work
    publish.py      recommendations, dead letters and changelog records; acks
    offsets.py      what may be committed, and when

`config.py` (the frozen `WorkerConfig`), `metrics.py` (Prometheus, /healthz,
/readyz) and `errors.py` serve them all. Record formats: docs/CONTRACTS.md.

May import: `streamrec.encoder`, `streamrec.index`, `streamrec.kafka_io`,
`streamrec.common`; never `streamrec.cli` or `streamrec.eventlog`.
"""
