"""The streaming pipeline: Kafka events in, recommendations out, state kept durable.

The modules, in the order an event meets them:

    app.py          `Worker`: starts the clients, runs the poll loop that drives every
                    stage below, drains and closes
    ingest.py       a partition's polled records through the next three:
    validate.py       decode + the event contract; bad records -> dead-letter topic
    state/            per-user histories, in memory and in the compacted changelog
    batcher.py        micro-batches of changed users, one query per user
    backpressure.py pause fetching while too many users wait for a batch
    model_stage.py  the recommender on its own thread, overlapping with Kafka work
    recommend.py      encoder (torch) + index search with exclusions, cold start
    outbox.py       a finished batch sent a slice of users per loop turn
    publish.py      recommendations, dead letters and changelog records, numbered; acks
    records.py        the recommendation record of each batch row, with its explanation
    commits.py      the commit protocol: offsets committed once nothing before them is
                    unanswered or unacknowledged; transactions with exactly-once

The item catalogue, beside the events: `items_feed.py` (the items topic read whole and
followed on a thread; records parsed by `item_records.py`, the item contract) and
`catalogue.py` (each item's latest state; retired items masked in the serving model's
search between two batches, a swapped-in model's rows included) and `live_items.py`
(items the model does not know, embedded by its content tower and searched beside
its index until a retrain learns them).

Beside the flow: `rebalance.py` (partitions assigned, revoked, lost: restore, commit,
drop), `reload.py` (a new model version loaded off the hot path, swapped in between
two batches), `topics.py` (ACLs checked and topics created before serving), `heap.py`
(the garbage collector kept off the serving path), `config.py` (the frozen
`WorkerConfig`), `metrics.py` (Prometheus, /healthz, /readyz, /reload) and
`errors.py`. Record formats: docs/CONTRACTS.md.

May import: `streamrec.encoder`, `streamrec.index`, `streamrec.kafka_io`,
`streamrec.common`; never `streamrec.cli` or `streamrec.eventlog`.
"""
