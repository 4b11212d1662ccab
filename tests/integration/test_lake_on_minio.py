"""Spark writes and reads the lake on S3 (MinIO) through ``s3a://``, as the stream job's landing does.

The pyspark wheel has no S3A, so this proves the jars from ``stack/maven/spark-s3`` plus the session
settings of ``common.spark`` are enough: a streaming Parquet file sink (the landing's sink, same
partitioning and codec) commits files and its ``_spark_metadata`` log on MinIO, and a batch read
of the sink folder returns exactly the committed rows. Only MinIO is started, in its own home and
on free ports, so a demo stack on the default ports is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from common.lake import landing_path, spark_uri
from common.settings import Settings
from stack import s3_client
from stack.maven import spark_jars, spark_s3_jars
from stream.landing import OPEN_FILES, landing_writer
from tests.integration.own_services import free_pair, minio_alone
from tests.integration.stream_spark import stream_spark_session

pytestmark = pytest.mark.integration

BUCKET = "lake-test"
PYSPARK_JARS = Path(__import__("pyspark").__file__).parent / "jars"
SCHEMA = StructType([
    StructField("event_id", StringType()),
    StructField("tenant", StringType()),
    StructField("value", LongType()),
    StructField("timestamp", TimestampType()),
])


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        s3_endpoint=f"http://127.0.0.1:{free_pair()}",
        lake_uri=f"s3://{BUCKET}/lake",
        checkpoint_dir=str(tmp_path / "checkpoints"),
        minio_manage=True,
        kafka_manage=False,
        redis_manage=False,
    )


@pytest.fixture()
def minio(settings: Settings) -> Iterator[Settings]:
    with minio_alone(settings):
        yield settings


@pytest.fixture()
def spark(minio: Settings) -> Iterator[SparkSession]:
    jars = [str(p) for p in spark_s3_jars(minio, progress=print)]
    session = stream_spark_session(minio, "test-lake-on-minio", jars)
    try:
        yield session
    finally:
        session.stop()


def _events(start: datetime, count: int, first: int) -> list[dict[str, object]]:
    """Events 20 minutes apart, so a batch spans several ``dt=/hour=`` partitions (and a day change)."""
    return [
        {"event_id": f"e{first + i:04d}", "tenant": f"t{i % 3}", "value": first + i,
         "timestamp": (start + timedelta(minutes=20 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        for i in range(count)
    ]


def _land(spark: SparkSession, settings: Settings, inbox: Path) -> None:
    """One ``availableNow`` run of a Parquet file sink shaped like the stream job's landing."""
    query = (
        landing_writer(
            spark.readStream.schema(SCHEMA).json(str(inbox)), settings, f"{settings.effective_checkpoint_dir}/landing"
        )
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(timeout=180)
    assert query.exception() is None, query.exception()
    assert not query.isActive


def _expected(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    out = []
    for row in rows:
        ts = datetime.strptime(str(row["timestamp"]), "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
        out.append((row["event_id"], row["tenant"], row["value"], ts.strftime("%Y-%m-%d"), ts.strftime("%H")))
    return sorted(out)


def test_streaming_parquet_sink_round_trips_through_minio(spark: SparkSession, settings: Settings,
                                                          tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    start = datetime(2024, 5, 1, 22, 5, tzinfo=UTC)
    first = _events(start, 9, 0)
    # More hours than the landing keeps files open at once: Spark sorts the rest of the batch (land_without_sorting).
    second = _events(start + timedelta(hours=4), 3 * (OPEN_FILES + 2), 100)

    # Two micro-batches (two runs), so the sink's metadata log on S3 is appended to, not just created.
    (inbox / "batch-0.json").write_text("".join(json.dumps(r) + "\n" for r in first))
    _land(spark, settings, inbox)
    (inbox / "batch-1.json").write_text("".join(json.dumps(r) + "\n" for r in second))
    _land(spark, settings, inbox)

    client: Any = s3_client(settings)  # a boto3 S3 client, typed as object by the stack
    prefix = landing_path(settings).removeprefix(f"s3://{BUCKET}/") + "/"
    # A file in the sink folder that no batch committed (as a crashed micro-batch leaves behind):
    # readers of the sink folder must go by _spark_metadata and never see it.
    stray = f"{prefix}dt=2024-05-01/hour=22/part-99999-uncommitted.zstd.parquet"
    client.put_object(Bucket=BUCKET, Key=stray, Body=b"not parquet")

    read = spark.read.schema(
        StructType([*SCHEMA.fields, StructField("dt", StringType()), StructField("hour", StringType())])
    ).parquet(spark_uri(landing_path(settings)))
    got = sorted(tuple(r) for r in read.select("event_id", "tenant", "value", "dt", "hour").collect())
    assert got == _expected(first + second)

    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(obj["Key"].removeprefix(prefix) for obj in page.get("Contents", []))
    print("objects on MinIO:", *sorted(keys), sep="\n  ")
    assert {"_spark_metadata/0", "_spark_metadata/1"} <= set(keys)
    data = [k for k in keys if k.endswith(".parquet") and "uncommitted" not in k]
    assert data and all(k.endswith(".zstd.parquet") for k in data)
    partitions = {tuple(part.split("=", 1)[1] for part in k.split("/")[:2]) for k in data}
    assert all(k.split("/")[0].startswith("dt=") and k.split("/")[1].startswith("hour=") for k in data)
    assert partitions == {(dt, hour) for _, _, _, dt, hour in _expected(first + second)}


def test_spark_s3_jars_are_small_and_add_only_what_pyspark_lacks(settings: Settings) -> None:
    """The S3 jars avoid the AWS SDK bundle and never put a second copy of a pyspark jar on the classpath."""
    jars = spark_s3_jars(settings, progress=lambda _line: None)
    names = {j.name for j in jars}
    hadoop = next(p.name for p in PYSPARK_JARS.glob("hadoop-client-api-*.jar")).removeprefix("hadoop-client-api-")
    assert f"hadoop-aws-{hadoop}" in names
    assert any(n.startswith("s3-2.") for n in names) and not any(n.startswith("bundle-") for n in names)
    assert sum(j.stat().st_size for j in jars) < 50 * 1024 * 1024
    artifact = {n.rsplit("-", 1)[0] for n in names}
    shipped = {p.name.rsplit("-", 1)[0] for p in PYSPARK_JARS.glob("*.jar")}
    assert not artifact & shipped, f"jars pyspark already ships: {artifact & shipped}"
    # pyspark's newer netty, httpclient, slf4j and commons-* serve the SDK (netty-nio-client is the SDK's own).
    shadowed = ("netty-", "httpclient-", "httpcore-", "slf4j-", "commons-")
    assert not [n for n in names if n.startswith(shadowed) and not n.startswith("netty-nio-client-")]

    local = settings.model_copy(update={"lake_uri": ""})
    assert set(spark_jars(settings, progress=lambda _line: None)) >= set(jars)
    assert not set(spark_jars(local, progress=lambda _line: None)) & set(jars), "a local lake needs no S3 jars"


# ------------------------------------------------------------------------------ Delta tables on MinIO


WRITERS = 8


def _restate_hours(settings_json: str, writer: int, rounds: int) -> list[int]:
    """One writer process: replaces its own hour ``rounds`` times and the shared hour once; returns its versions.

    Runs in a spawned process (delta-rs must not be used in a forked child)."""
    from common.events import EVENT_ARROW_SCHEMA
    from common.lake_tables import ARCHIVE_TABLE, replace_partition, with_partition_columns

    settings = Settings.model_validate_json(settings_json)
    versions = []
    for round_ in range(rounds):
        hour = datetime(2024, 5, 1, writer, tzinfo=UTC)
        rows = [{"tenant": f"w{writer}", "event": "click", "timestamp": hour + timedelta(seconds=i),
                 "event_id": f"{writer}-{round_}-{i}", "user_id": "u", "page": "/", "country": "FR", "device": "mobile",
                 "revenue": 1.0, "properties": "{}", "received_at": hour} for i in range(10 + writer)]
        table = pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA)
        try:
            versions.append(replace_partition(settings, ARCHIVE_TABLE, hour,
                                              with_partition_columns(table, ARCHIVE_TABLE, hour),
                                              "archive", {"writer": writer, "round": round_}))
        except Exception as error:  # delta-rs's exceptions do not pickle back to the test process
            raise RuntimeError(f"writer {writer}, round {round_}: {type(error).__name__}: {error}") from None
    return versions


def test_concurrent_writers_on_minio_never_lose_a_commit(minio: Settings) -> None:
    """Eight processes replace their own hours of one table on MinIO at once, without a lock service: every
    commit lands (conditional PUTs on the log: the loser of a race retries on the next version), each hour
    ends with its writer's last rows, and the history holds every commit exactly once."""
    import multiprocessing

    from common.lake_tables import ARCHIVE_TABLE, PROVENANCE_KEY, open_table, partition_stats

    rounds = 3
    context = multiprocessing.get_context("spawn")
    with context.Pool(WRITERS) as pool:
        results = pool.starmap(_restate_hours, [(minio.model_dump_json(), w, rounds) for w in range(WRITERS)])
    versions = [v for vs in results for v in vs]
    assert sorted(versions) == list(range(WRITERS * rounds)), "each writer's commit has its own version, none lost"
    delta = open_table(minio, ARCHIVE_TABLE)
    assert delta.version() == WRITERS * rounds - 1
    provenance = [json.loads(c[PROVENANCE_KEY]) for c in delta.history() if PROVENANCE_KEY in c]
    assert sorted((p["writer"], p["round"]) for p in provenance) == sorted(
        (w, r) for w in range(WRITERS) for r in range(rounds))
    stats = partition_stats(delta, ARCHIVE_TABLE)
    assert {h.hour: s["rows"] for h, s in stats.items()} == {w: 10 + w for w in range(WRITERS)}
