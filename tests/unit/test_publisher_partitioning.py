"""Packed records go to the partition Kafka's own partitioner would pick for each event's key."""

from kafka.partitioner.default import DefaultPartitioner

from ingest.publisher import partition_for


class SevenPartitions:
    """Just the cluster metadata the partitioner reads."""

    def topics(self):
        return {"events"}

    def partitions_for_topic(self, topic):
        return set(range(7))

    def available_partitions_for_topic(self, topic):
        return set(range(7))


def test_partition_matches_kafkas_default_partitioner():
    kafka = DefaultPartitioner()
    for n in range(2000):
        key = f"tenant-{n % 3}:{n * 7919}".encode()
        assert partition_for(key, 7) == kafka.partition("events", key, key, None, None, SevenPartitions())
