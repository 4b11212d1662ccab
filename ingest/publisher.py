"""Publishes validated events to Kafka and rejected ones to the dead-letter topic.

The producer uses ``acks=all`` so an acknowledged event survives a broker restart; events are keyed
by tenant and user so one user's events stay ordered while load spreads over partitions.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from common.settings import Settings


class KafkaUnavailable(RuntimeError):
    """Kafka did not take the events; nothing was acknowledged to the client."""


class EventPublisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _kafka(self) -> KafkaProducer:
        # Created on first use: kafka-python blocks ~30 s when no broker answers, which must not
        # stall the API's start-up (queries keep working while Kafka is down).
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self._settings.kafka_bootstrap,
                        acks="all",
                        linger_ms=5,
                        batch_size=256 * 1024,
                        compression_type="lz4",
                        max_block_ms=10_000,
                        retries=5,
                    )
                except KafkaError as exc:
                    raise self._unavailable(exc) from exc
            return self._producer

    def _unavailable(self, exc: Exception) -> KafkaUnavailable:
        return KafkaUnavailable(
            f"Kafka is not reachable at {self._settings.kafka_bootstrap} ({exc}) — run `lakehouse stack up` "
            "or set LAKEHOUSE_KAFKA_BOOTSTRAP; retry the request, nothing was accepted"
        )

    def publish(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]], *, wait: bool = False
    ) -> None:
        """Send ``events`` to the events topic and ``rejected`` to the DLQ; ``wait`` blocks until acked."""
        producer = self._kafka()
        futures = []
        try:
            for event in events:
                key = f"{event['tenant']}:{event['user_id']}".encode()
                futures.append(producer.send(self._settings.kafka_topic, key=key, value=orjson.dumps(event)))
            for record in rejected:
                futures.append(producer.send(self._settings.kafka_dlq_topic, value=orjson.dumps(record)))
            if wait:
                producer.flush(timeout=30)
                for future in futures:
                    future.get(timeout=0)
        except KafkaError as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
