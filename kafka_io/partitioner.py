"""Kafka's default key partitioner (murmur2, as the Java client), for callers that pick
the partition themselves: the worker computes a user's partition once and keeps it,
and both adapters then send to it, so every client agrees where a key lives."""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner gives `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
