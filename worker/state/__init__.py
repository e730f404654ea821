"""The worker's state: per-user histories, in memory and in a compacted changelog.

Three layers, each in its own module:
    partition.py   `PartitionStore`: one partition's users, numpy rows of the last L items
    changelog.py   the changelog record format (`HistoryRecord`) and restore/fetch reads
    durable.py     `DurableHistories`: a store per owned partition, kept in step with
                   the changelog (write changed users, restore, evict and read back)

and what they share:
    items.py          `ItemTable`: external item id <-> history row, the serving model's
                      rows first, then items it does not know (capped)
    parallel_read.py  a large restore read by reader processes, a share of the
                      partitions each
    evicted.py        `EvictedIndex`: where each user evicted by `--max-users` left their
                      state in the changelog, ~16 bytes a user
"""
