"""The event contract applied by the stream to every Kafka record, whoever produced it.

``RecordContract`` runs in Spark's Python workers (``DataFrame.mapInArrow``) and calls
``common.events.events_of_record``, the same rules ``POST /events`` applies, so there is one
contract and one implementation of it. Each Kafka record becomes one row per valid event (the
normalized form, with its Kafka partition, offset and index) plus one row per rejected record or
event that carries only ``dead_letter``: the JSON the dead-letter topic receives (reason, source
partition/offset, the first 4 KB of the bytes). Nothing a record holds is dropped without a row.

Most records are what the API writes, arrays of events already in normalized form: those are judged
a whole Arrow batch at a time (``stream.columnar_contract``, about half the cost per event), and every
other record, or one holding a single event that fails a check there, goes whole through
``events_of_record``, which gives the same rows and the reasons. The dead-letter query asks for the
rejections only, so the valid events it would drop are not handed back to Spark.

This module imports only pyarrow and ``common.events`` so that the Python workers start light.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from common.events import dead_letter, events_of_record
from stream.columnar_contract import judge_plain, parse_record, plain_items

EVENT_COLUMNS = ("tenant", "event", "timestamp", "event_id", "user_id", "page", "country", "device", "revenue",
                 "properties", "received_at")
CONTRACT_ARROW_SCHEMA = pa.schema(
    [(name, pa.float64() if name == "revenue" else pa.string()) for name in EVENT_COLUMNS]
    + [("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()), ("kafka_index", pa.int32()),
       ("dead_letter", pa.string())]
)
INSTANT_COLUMNS = ("timestamp", "received_at")
INSTANT = pa.timestamp("us", "UTC")
#: The rows as the stream's queries receive them with typed instants (``typed_instants``): the two instants as
#: Spark timestamps instead of ISO-8601 text, so Spark does not parse every event's two times again.
TYPED_CONTRACT_ARROW_SCHEMA = pa.schema(
    [pa.field(f.name, INSTANT) if f.name in INSTANT_COLUMNS else f for f in CONTRACT_ARROW_SCHEMA])
# The same schemas as Spark DDL, for mapInArrow (without typed instants the stream casts the text itself).
_SPARK_TYPES = {pa.float64(): "double", pa.int32(): "int", pa.int64(): "bigint", pa.string(): "string",
                INSTANT: "timestamp"}
CONTRACT_DDL = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in CONTRACT_ARROW_SCHEMA)
TYPED_CONTRACT_DDL = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in TYPED_CONTRACT_ARROW_SCHEMA)


def typed_instants(rows: pa.RecordBatch) -> pa.RecordBatch:
    """Contract rows with ``timestamp`` and ``received_at`` as UTC instants (microseconds) instead of text.

    Every instant the contract writes is in the canonical form (``2026-11-23T10:00:00.123Z``: ``format_ts``,
    or text the column-wise path checked against that form), which Arrow's ISO-8601 cast reads as the same
    instant Spark's ``CAST(... AS TIMESTAMP)`` gives in a UTC session; rejection rows keep null instants.
    Done in the Python worker, where the cast costs a few ms per 100k events, it spares the JVM a text
    parse of two times per event in every query that reads valid events (about 2.5 µs an event there).
    """
    columns = [pc.cast(rows.column(f.name), INSTANT) if f.name in INSTANT_COLUMNS else rows.column(f.name)
               for f in CONTRACT_ARROW_SCHEMA]
    return pa.RecordBatch.from_arrays(columns, schema=TYPED_CONTRACT_ARROW_SCHEMA)


class RecordContract:
    """``mapInArrow`` function: Kafka rows (value, topic, partition, offset, timestamp) → contract rows."""

    def __init__(self, max_age: timedelta, max_future: timedelta, columnar: bool = True,
                 rejections_only: bool = False, instants: bool = False, rejections_to: Any = None) -> None:
        self.max_age = max_age
        self.max_future = max_future
        self.columnar = columnar  # False: every record through events_of_record (the reference, for tests)
        # True: only the rejection rows (the dead-letter query): the valid events, which it would drop, are
        # neither built nor handed back to Spark.
        self.rejections_only = rejections_only
        # True: rows of TYPED_CONTRACT_ARROW_SCHEMA (instants typed, ``typed_instants``) come out of the call.
        self.instants = instants
        # A pyspark Accumulator of lists (``stream.landing.DeadLetters``): the rejections' ``dead_letter`` JSON is
        # added to it instead of coming out as rows, so one pass of a query yields its valid events to Spark and its
        # dead letters to the driver (the ``landing`` query).
        self.rejections_to = rejections_to

    @property
    def ddl(self) -> str:
        """The Spark schema of what a call yields (``mapInArrow``'s second argument)."""
        return TYPED_CONTRACT_DDL if self.instants else CONTRACT_DDL

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = self.apply(batch, datetime.now(UTC))
            if self.rejections_to is not None:
                rejected = pc.is_valid(rows.column("dead_letter"))
                if pc.any(rejected).as_py():
                    self.rejections_to.add(rows.filter(rejected).column("dead_letter").to_pylist())
                    rows = rows.filter(pc.invert(rejected))
            yield typed_instants(rows) if self.instants else rows

    def apply(self, batch: pa.RecordBatch, now: datetime) -> pa.RecordBatch:
        """The contract rows of ``batch``: records of plain normalized events are judged column-wise
        (``stream.columnar_contract``), every other record by ``events_of_record``; the rows come out in
        record order, each record's events by index and then its rejections, whichever path judged it."""
        values = batch.column("value").to_pylist()
        topics = batch.column("topic").to_pylist()
        partitions = batch.column("partition").to_pylist()
        offsets = batch.column("offset").to_pylist()
        times = [t if t is None or t.tzinfo is not None else t.replace(tzinfo=UTC)
                 for t in batch.column("timestamp").to_pylist()]
        received = [now if t is None or t.year < 2000 else min(t, now) for t in times]  # as events_of_record

        items: list[dict] = []
        item_rows: list[int] = []
        item_indices: list[int] = []
        slow_rows: set[int] = set()
        for row, value in enumerate(values):
            plain = plain_items(parse_record(value)) if self.columnar else None
            if plain is None:
                slow_rows.add(row)
                continue
            items += plain
            item_rows += [row] * len(plain)
            item_indices += range(len(plain))
        fast = None
        if items:
            fast, rejected_rows = judge_plain(items, item_rows, item_indices, received, self.max_age,
                                              self.max_future, events=not self.rejections_only)
            slow_rows |= rejected_rows

        columns: dict[str, list[Any]] = {name: [] for name in CONTRACT_ARROW_SCHEMA.names}
        slow_order: list[int] = []  # (record row, group, position) of each slow row, flattened into one key
        for row in sorted(slow_rows):
            value, topic, partition, offset, kafka_time = (values[row], topics[row], partitions[row], offsets[row],
                                                           times[row])
            good, dead = events_of_record(value, partition=partition, offset=offset, kafka_time=kafka_time,
                                          now=now, max_age=self.max_age, max_future=self.max_future, topic=topic)
            for index, event in [] if self.rejections_only else good:
                for name in EVENT_COLUMNS:
                    columns[name].append(event[name])
                columns["kafka_partition"].append(partition)
                columns["kafka_offset"].append(offset)
                columns["kafka_index"].append(index)
                columns["dead_letter"].append(None)
                slow_order.append(row)
            for rejected in dead:
                for name in EVENT_COLUMNS:
                    columns[name].append(None)
                columns["kafka_partition"].append(partition)
                columns["kafka_offset"].append(offset)
                columns["kafka_index"].append(rejected.index)
                record = dead_letter(rejected, topic=topic, partition=partition, offset=offset,
                                     kafka_time=kafka_time, now=now)
                columns["dead_letter"].append(orjson.dumps(record).decode())
                slow_order.append(row)
        slow = pa.RecordBatch.from_pydict(columns, schema=CONTRACT_ARROW_SCHEMA)
        if fast is None or fast.num_rows == 0:
            return slow
        fast_batch = pa.RecordBatch.from_pydict({
            **fast.columns,
            "kafka_partition": pc.take(batch.column("partition"), fast.rows).cast(pa.int32()),
            "kafka_offset": pc.take(batch.column("offset"), fast.rows).cast(pa.int64()),
            "kafka_index": fast.indices,
            "dead_letter": pa.nulls(fast.num_rows, pa.string()),
        }, schema=CONTRACT_ARROW_SCHEMA)
        if slow.num_rows == 0:
            return fast_batch
        # Back into record order (a record is judged whole by one path; sort_indices is stable).
        merged = pa.Table.from_batches([fast_batch, slow])
        order = pc.sort_indices(pa.concat_arrays([fast.rows, pa.array(slow_order, pa.int64())]))
        return merged.take(order).combine_chunks().to_batches()[0]
