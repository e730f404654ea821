"""The worker's state: per-user histories, in memory and in a compacted changelog.

Three layers, each in its own module:
    partition.py   `PartitionStore`: one partition's users, numpy rows of the last L items
    changelog.py   the changelog record format (`HistoryRecord`) and restore/fetch reads
    durable.py     `DurableHistories`: a store per owned partition, kept in step with
                   the changelog (write changed users, restore, evict and read back)
"""
