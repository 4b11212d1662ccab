"""What a Kafka topic holds right now: the end offset of each of its partitions.

The batch layer compares them with the offsets the stream's queries have committed
(``stream_progress.end_offsets``, Spark's ``{"topic": {"partition": offset}}``) to tell whether the
stream has processed everything that was written (``batch.hour_state``), so they come in the same shape.
"""

from __future__ import annotations

from typing import Any


class KafkaUnavailable(RuntimeError):
    """The topic's end offsets could not be read (broker down, topic missing)."""


def topic_end_offsets(bootstrap: str, topic: str, timeout_seconds: float = 10.0) -> dict[str, dict[str, int]]:
    """``{topic: {partition: end offset}}`` read now through a short-lived consumer (no group, no commits)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    consumer: Any = None
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="lakehouse-hour-state",
                                 enable_auto_commit=False, request_timeout_ms=int(timeout_seconds * 1000),
                                 bootstrap_timeout_ms=int(timeout_seconds * 1000))
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise KafkaUnavailable(f"topic {topic!r} has no partitions at {bootstrap} (does it exist?)")
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
    except KafkaError as exc:
        raise KafkaUnavailable(f"Kafka is not reachable at {bootstrap}: {exc}") from exc
    finally:
        if consumer is not None:
            consumer.close()
    return {topic: {str(tp.partition): int(offset) for tp, offset in ends.items()}}
