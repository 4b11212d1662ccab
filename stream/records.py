"""What every query of the stream reads: Kafka records judged by the event contract, and the valid events among them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.settings import Settings
from stream.contract import RecordContract


def contract_rows(kafka: DataFrame, settings: Settings, rejections_only: bool = False,
                  rejections_to: Any = None) -> DataFrame:
    """Kafka records → one row per valid event (normalized) or per rejection (``dead_letter`` set);
    with ``rejections_only``, the rejections alone (``stream.landing.retire_dead_letter_query``'s catch-up); with
    ``rejections_to`` (an accumulator, ``stream.landing.DeadLetters``), the valid events alone, the rejections'
    ``dead_letter`` going to the accumulator (the ``landing`` query).

    Records that do not come from Kafka (files replayed as records by the archive tests) have no
    Kafka timestamp: they are judged against the receive time their ingestion point stamped.
    """
    contract = RecordContract(timedelta(days=settings.ingest_max_age_days),
                              timedelta(seconds=settings.ingest_max_future_seconds), rejections_only=rejections_only,
                              instants=settings.stream_typed_instants, rejections_to=rejections_to)
    value = F.col("value").cast("binary")
    topic = F.col("topic") if "topic" in kafka.columns else F.lit(settings.kafka_topic)
    kafka_time = F.col("timestamp") if "timestamp" in kafka.columns else F.get_json_object(
        F.col("value").cast("string"), "$.received_at").cast("timestamp")
    records = kafka.select(value.alias("value"), topic.alias("topic"), "partition", "offset",
                           kafka_time.alias("timestamp"))
    return records.mapInArrow(contract, contract.ddl)


def valid_events(rows: DataFrame) -> DataFrame:
    """The contract's valid events, typed (instants as timestamps), with their Kafka position.

    With typed instants from the contract (``stream_typed_instants``) the casts are no-ops Spark removes."""
    return (
        rows.where(F.col("dead_letter").isNull()).drop("dead_letter")
        .withColumn("timestamp", F.col("timestamp").cast("timestamp"))
        .withColumn("received_at", F.col("received_at").cast("timestamp"))
    )


def parse_events(kafka: DataFrame, settings: Settings) -> DataFrame:
    """Kafka records → typed valid events (the hot query's input; tests replay archived records through it)."""
    return valid_events(contract_rows(kafka, settings))
