"""Packed records go to the partition Kafka's own partitioner would pick for each event's key."""

from kafka.partitioner.default import DefaultPartitioner

from ingest.publisher import partition_for


def test_partition_matches_kafkas_default_partitioner():
    partitions = list(range(7))
    for n in range(2000):
        key = f"tenant-{n % 3}:{n * 7919}".encode()
        assert partition_for(key, 7) == DefaultPartitioner()(key, partitions, partitions)
