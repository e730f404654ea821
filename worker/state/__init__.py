"""The worker's state: per-user histories, in memory and in a compacted changelog.

Three layers, each in its own module (the changelog layer in three):
    partition.py          `PartitionStore`: one partition's users, numpy rows of the last
                          L items
    changelog.py          the changelog record format (`HistoryRecord`): encode, decode
    changelog_bulk.py     `decode_rows`: many records decoded at once, for restores
    changelog_read.py     the latest record per user read from the topic (`LatestRead`),
                          restore and fetch of evicted users
    durable.py            `DurableHistories`: a store per owned partition, kept in step
                          with the changelog (write changed users, restore, evict and
                          read back)

and what they share:
    items.py          `ItemTable`: external item id <-> history row, the serving model's
                      rows first, then items it does not know (capped)
    parallel_read.py  a large restore read by reader processes, a share of the
                      partitions each
    evicted.py        `EvictedIndex`: where each user evicted by `--max-users` left their
                      state in the changelog, ~16 bytes a user
"""
