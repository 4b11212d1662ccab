"""The event contract applied by the stream to every Kafka record, whoever produced it.

``RecordContract`` runs in Spark's Python workers (``DataFrame.mapInArrow``) and calls
``common.events.events_of_record``, the same rules ``POST /events`` applies, so there is one
contract and one implementation of it. Each Kafka record becomes one row per valid event (the
normalized form, with its Kafka partition, offset and index) plus one row per rejected record or
event that carries only ``dead_letter``: the JSON the dead-letter topic receives (reason, source
partition/offset, the first 4 KB of the bytes). Nothing a record holds is dropped without a row.

This module imports only pyarrow and ``common.events`` so that the Python workers start light.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from common.events import dead_letter, events_of_record

EVENT_COLUMNS = ("tenant", "event", "timestamp", "event_id", "user_id", "page", "country", "device", "revenue",
                 "properties", "received_at")
CONTRACT_ARROW_SCHEMA = pa.schema(
    [(name, pa.float64() if name == "revenue" else pa.string()) for name in EVENT_COLUMNS]
    + [("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()), ("kafka_index", pa.int32()),
       ("dead_letter", pa.string())]
)
# The same schema as Spark DDL, for mapInArrow (instants stay ISO-8601 text here; the stream casts them).
_SPARK_TYPES = {pa.float64(): "double", pa.int32(): "int", pa.int64(): "bigint", pa.string(): "string"}
CONTRACT_DDL = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in CONTRACT_ARROW_SCHEMA)


class RecordContract:
    """``mapInArrow`` function: Kafka rows (value, topic, partition, offset, timestamp) → contract rows."""

    def __init__(self, max_age: timedelta, max_future: timedelta) -> None:
        self.max_age = max_age
        self.max_future = max_future

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield self.apply(batch, datetime.now(UTC))

    def apply(self, batch: pa.RecordBatch, now: datetime) -> pa.RecordBatch:
        columns: dict[str, list[Any]] = {name: [] for name in CONTRACT_ARROW_SCHEMA.names}
        values = batch.column("value").to_pylist()
        topics = batch.column("topic").to_pylist()
        partitions = batch.column("partition").to_pylist()
        offsets = batch.column("offset").to_pylist()
        times = batch.column("timestamp").to_pylist()
        for value, topic, partition, offset, kafka_time in zip(values, topics, partitions, offsets, times,
                                                              strict=True):
            if kafka_time is not None and kafka_time.tzinfo is None:
                kafka_time = kafka_time.replace(tzinfo=UTC)
            good, dead = events_of_record(value, partition=partition, offset=offset, kafka_time=kafka_time,
                                          now=now, max_age=self.max_age, max_future=self.max_future, topic=topic)
            for index, event in good:
                for name in EVENT_COLUMNS:
                    columns[name].append(event[name])
                columns["kafka_partition"].append(partition)
                columns["kafka_offset"].append(offset)
                columns["kafka_index"].append(index)
                columns["dead_letter"].append(None)
            for rejected in dead:
                for name in EVENT_COLUMNS:
                    columns[name].append(None)
                columns["kafka_partition"].append(partition)
                columns["kafka_offset"].append(offset)
                columns["kafka_index"].append(rejected.index)
                record = dead_letter(rejected, topic=topic, partition=partition, offset=offset,
                                     kafka_time=kafka_time, now=now)
                columns["dead_letter"].append(orjson.dumps(record).decode())
        return pa.RecordBatch.from_pydict(columns, schema=CONTRACT_ARROW_SCHEMA)
