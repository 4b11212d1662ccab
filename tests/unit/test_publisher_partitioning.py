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


class QueueingProducer:
    """A producer that only queues: each send returns kafka-python's own Future, settled by the test."""

    def __init__(self):
        self.futures = []

    def partitions_for(self, topic):
        return {0, 1}

    def send(self, topic, value, partition=None):
        from kafka.future import Future

        self.futures.append(Future())
        return self.futures[-1]


def test_async_delivery_failures_are_counted_and_logged(caplog):
    from kafka.errors import KafkaTimeoutError

    from common.settings import Settings
    from ingest.publisher import EventPublisher

    publisher = EventPublisher(Settings())
    producer = QueueingProducer()
    publisher._producer = producer
    reported = []
    publisher.on_delivery_failure = reported.append
    events = [{"tenant": "t", "user_id": str(i), "event": "e"} for i in range(450)]
    publisher.publish(events, [{"reason": "bad"}], wait=False)  # answered at once: nothing is delivered yet
    assert publisher.delivery_failures == 0
    for future in producer.futures:
        future.failure(KafkaTimeoutError("broker gone"))
    assert publisher.delivery_failures == 451 and sum(reported) == 451
    assert "were NOT delivered" in caplog.text
