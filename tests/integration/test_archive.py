"""The hourly archive on real Spark landings, on the local file system and on MinIO.

The landing is produced the way the stream job produces it, without Kafka: Kafka-shaped records
(``value`` = the normalized event JSON the API publishes, ``partition``, ``offset``) are written as JSON
files, read by a Spark file stream, parsed by the stream job's own ``parse_events`` and written by a
Parquet file sink with the landing's options (zstd, ``partitionBy("dt", "hour")``, ``availableNow``).
One JSON file per micro-batch, so an hour's folder gets several committed files. A stray Parquet file
dropped into the hour folder by hand (what a crashed micro-batch leaves behind) must never be archived.

The ground truth is computed in Python from what the test wrote, never from the system under test:
per hour, one row per event_id, the one received first (ties: lowest Kafka partition/offset).

MinIO is started alone, on free ports, in the test's home, and the Spark session is the project's
(``common.spark.spark_session`` with the S3A jars of ``stack.maven.spark_s3_jars``), so the MinIO run
writes its landing through ``s3a://`` exactly like the stream job on S3. The local run shares that
session (its landing paths are plain local paths).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

import batch.archive as archive
import common.lake_tables as lake_tables
from batch.archive import ARCHIVE_FILE_SCHEMA, archive_hour, archived_hour, published_files, verify_hour
from common.events import EVENT_ARROW_SCHEMA, normalize_event
from common.lake import (
    archive_path,
    committed_files,
    fs_path,
    hour_partition,
    lake_filesystem,
    landing_files_by_hour,
    landing_path,
    spark_uri,
    unarchived_landing_files,
)
from common.lake_tables import ARCHIVE_TABLE, open_table, partition_files
from common.settings import Settings
from stack.maven import spark_s3_jars
from storage_tiers.lake.sql import lake_connection
from stream.landing import landing_writer
from stream.records import parse_events
from tests.integration.own_services import free_pair, minio_alone
from tests.integration.stream_spark import stream_spark_session

pytestmark = pytest.mark.integration

BUCKET = "archive-test"
HOUR = datetime(2024, 5, 1, 22, tzinfo=UTC)
BEFORE, AFTER = HOUR - timedelta(hours=1), HOUR + timedelta(hours=1)
EMPTY_HOUR = datetime(2024, 5, 2, 5, tzinfo=UTC)
KAFKA_RECORD = StructType([
    StructField("value", StringType()),
    StructField("partition", IntegerType()),
    StructField("offset", LongType()),
])
# Small row groups so a few thousand events exercise several of them.
ROW_GROUP_ROWS = 500
COLUMNS = EVENT_ARROW_SCHEMA.names


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """MinIO alone with the test bucket; its settings put the lake on it. Stopped whatever happens."""
    home = tmp_path_factory.mktemp("archive-minio")
    settings = Settings(home=home, s3_endpoint=f"http://127.0.0.1:{free_pair()}", lake_uri=f"s3://{BUCKET}/lake",
                        minio_manage=True, kafka_manage=False, redis_manage=False)
    with minio_alone(settings):
        yield settings


@pytest.fixture(scope="module")
def spark(minio: Settings) -> Iterator[SparkSession]:
    session = stream_spark_session(minio, "test-archive", [str(p) for p in spark_s3_jars(minio, progress=print)])
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(params=["local", "minio"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, minio: Settings) -> Settings:
    """A fresh lake per test: a local folder, or a fresh prefix in the MinIO bucket."""
    lake = "" if request.param == "local" else f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/lake"
    return minio.model_copy(update={"home": tmp_path / "home", "lake_uri": lake,
                                    "checkpoint_dir": str(tmp_path / "checkpoints")})


@pytest.fixture(autouse=True)
def small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "ROW_GROUP_ROWS", ROW_GROUP_ROWS)
    monkeypatch.setattr(lake_tables, "ROW_GROUP_ROWS", ROW_GROUP_ROWS)


# ------------------------------------------------------------------------- landing and ground truth


@dataclass
class Landed:
    """Every Kafka record the test handed to the landing, with the stream's parsed form."""

    records: list[dict[str, Any]]  # {"event": normalized event, "partition", "offset"}

    def truth(self, hour: datetime) -> dict[tuple[str, str], dict[str, Any]]:
        """One row per (tenant, event_id) of ``hour``: first received, then lowest partition/offset."""
        best: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any]]] = {}
        for rec in self.records:
            event = rec["event"]
            if _parse(event["timestamp"]).replace(minute=0, second=0, microsecond=0) != hour:
                continue
            key = (_parse(event["received_at"]), rec["partition"], rec["offset"])
            ident = (event["tenant"], event["event_id"])
            if ident not in best or key < best[ident][0]:
                best[ident] = (key, event)
        return {ident: _as_row(event) for ident, (_, event) in best.items()}

    def rows_in(self, hour: datetime) -> int:
        return sum(1 for r in self.records
                   if _parse(r["event"]["timestamp"]).replace(minute=0, second=0, microsecond=0) == hour)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _as_row(event: dict[str, Any]) -> dict[str, Any]:
    """A normalized event as the archive stores it (EVENT_ARROW_SCHEMA, Python values)."""
    row = dict(event)
    row["timestamp"], row["received_at"] = _parse(event["timestamp"]), _parse(event["received_at"])
    return {c: row[c] for c in COLUMNS}


class Generator:
    """Valid events through the API's own normalization, with Kafka partitions and offsets."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.offsets = [0, 0, 0, 0]

    def record(self, raw: dict[str, Any], received: datetime, partition: int | None = None) -> dict[str, Any]:
        event = normalize_event(raw, now=received, max_age=timedelta(days=30), max_future=timedelta(seconds=300))
        partition = self.rng.randrange(4) if partition is None else partition
        self.offsets[partition] += 1
        return {"event": event, "partition": partition, "offset": self.offsets[partition]}

    def raw(self, ts: datetime, event_id: str | None = None) -> dict[str, Any]:
        rng = self.rng
        raw: dict[str, Any] = {
            "event_id": event_id or str(uuid.uuid4()),
            "tenant": rng.choice(["acme", "globex", "initech"]),
            "event": rng.choice(["page_view", "click", "signup", "purchase"]),
            "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "user_id": f"u{rng.randrange(500)}",
            "page": rng.choice(["/", "/pricing", "/docs", "/blog/o'reilly"]),
            "country": rng.choice(["FR", "US", "DE", ""]),
            "device": rng.choice(["mobile", "desktop"]),
        }
        if rng.random() < 0.3:
            raw["revenue"] = round(rng.uniform(1, 500), 2)
        if rng.random() < 0.3:
            raw["properties"] = {"campaign": rng.choice(["a", "b"]), "ab": rng.randrange(3)}
        return raw

    def soon_after(self, ts: datetime) -> datetime:
        """When the API received an event sent at ``ts``: up to 5 s later."""
        return ts + timedelta(milliseconds=self.rng.randrange(5000))

    def at(self, hour: datetime, count: int) -> list[datetime]:
        return [hour + timedelta(milliseconds=self.rng.randrange(3_600_000)) for _ in range(count)]


def _write_batch(inbox: Path, name: str, records: list[dict[str, Any]]) -> None:
    lines = (json.dumps({"value": json.dumps(r["event"]), "partition": r["partition"], "offset": r["offset"]})
             for r in records)
    (inbox / f"{name}.json").write_text("\n".join(lines) + "\n")


def _land(spark: SparkSession, settings: Settings, inbox: Path) -> None:
    """An ``availableNow`` run of a sink shaped like stream/job.py's ``landing`` (one file per batch)."""
    records = spark.readStream.schema(KAFKA_RECORD).option("maxFilesPerTrigger", 1).json(str(inbox))
    query = (
        landing_writer(parse_events(records, settings), settings, f"{settings.effective_checkpoint_dir}/landing")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(timeout=300)
    assert query.exception() is None, query.exception()
    assert not query.isActive


def _drop_stray_file(settings: Settings, fs: pafs.FileSystem) -> str:
    """A valid Parquet file in the hour's landing folder that no micro-batch committed."""
    gen = Generator(99)
    stray = [gen.record(gen.raw(HOUR + timedelta(minutes=30), f"stray-{i}"), HOUR + timedelta(minutes=31))
             for i in range(5)]
    table = pa.Table.from_pylist([{**_as_row(r["event"]), "kafka_partition": 0, "kafka_offset": 10**9 + i}
                                  for i, r in enumerate(stray)])
    path = f"{fs_path(landing_path(settings))}/{hour_partition(HOUR)}/part-99999-crashed-batch.c000.zstd.parquet"
    with fs.open_output_stream(path) as sink:
        pq.write_table(table, sink, compression="zstd")
    return path


# ---------------------------------------------------------------------------------------- checks


def _check_published(settings: Settings, hour: datetime, landed: Landed, result: archive.ArchiveResult) -> dict:
    """Everything a reader relies on, for one committed hour; returns its commit's provenance."""
    fs = lake_filesystem(settings)
    truth = landed.truth(hour)
    archived = archived_hour(settings, hour)
    assert archived is not None
    provenance = archived.provenance

    # Rows: exactly the distinct events of the hour, each as first received; the stray file is not read.
    assert result.rows == provenance["rows"] == archived.rows == len(truth)
    assert result.landing_rows == provenance["landing_rows"] == landed.rows_in(hour)
    assert provenance["duplicates_dropped"] == landed.rows_in(hour) - len(truth)
    rows: list[dict[str, Any]] = []
    for uri in archived.files:
        part = pq.read_table(fs_path(uri), filesystem=fs).to_pylist()
        keys = [(r["tenant"], r["event"], r["timestamp"], r["event_id"]) for r in part]
        assert keys == sorted(keys), "each file is sorted by tenant, event, timestamp, event_id"
        rows.extend(part)
    assert {(r["tenant"], r["event_id"]): r for r in rows} == truth
    assert len(rows) == len(truth)
    assert not [r for r in rows if r["event_id"].startswith("stray-")]

    # Files: zstd, bounded row groups, the event contract's columns (instants in µs, as Delta stores them),
    # sizes as the table's log records them.
    for uri in archived.files:
        data = _read(fs, fs_path(uri))
        assert len(data) == archived.sizes[uri]
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
        assert meta.schema.to_arrow_schema().remove_metadata() == ARCHIVE_FILE_SCHEMA
        for g in range(meta.num_row_groups):
            assert meta.row_group(g).num_rows <= ROW_GROUP_ROWS
            assert {meta.row_group(g).column(c).compression for c in range(meta.num_columns)} == {"ZSTD"}
    assert archived.bytes == result.bytes

    # Provenance in the commit: the hour, time range, checksum, landing files consumed (committed ones only).
    assert provenance["partition"] == hour_partition(hour) and provenance["operation"] == "archive"
    assert provenance["hour"] == hour.strftime("%Y-%m-%dT%H:00:00.000Z")
    times = [r["timestamp"] for r in truth.values()]
    assert result.min_event_time == (min(times) if times else None)
    assert result.max_event_time == (max(times) if times else None)
    assert provenance["min_event_time"] == (min(times).isoformat(timespec="milliseconds")[:-6] + "Z"
                                            if times else None)
    assert provenance["checksum"] == result.checksum and result.checksum.startswith("sha256:")
    committed = sorted(f for f in committed_files(landing_path(settings), fs) if f"/{hour_partition(hour)}/" in f)
    assert provenance["landing_files"] == result.landing_files == committed
    assert not [f for f in provenance["landing_files"] if "crashed-batch" in f]
    assert provenance["tool"]["name"] == "lakehouse.batch.archive" and provenance["tool"]["deltalake"]
    assert datetime.fromisoformat(provenance["created_at"].replace("Z", "+00:00")) > datetime.now(UTC) - timedelta(
        minutes=10)
    assert provenance["version"] == result.version
    assert published_files(settings, hour) == result.files == archived.files
    assert verify_hour(settings, hour) == []

    # Readers straight from the documented path: the table's pyarrow dataset (pandas), filtered on the hour.
    dataset = open_table(settings, ARCHIVE_TABLE).to_pyarrow_dataset()
    frame = dataset.to_table(filter=(pads.field("dt") == pa.scalar(hour.date(), pa.date32()))
                             & (pads.field("hour") == hour.hour)).to_pandas()
    assert len(frame) == len(frame.drop_duplicates(["tenant", "event_id"])) == len(truth)
    return provenance


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


# ------------------------------------------------------------------------------------------- test


def test_archive_hour_dedups_sorts_and_publishes_atomically(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    gen = Generator(7)
    fs = lake_filesystem(settings)
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    # Batch 0: the hour (with its exact edges), its neighbours, duplicates within the batch received later.
    times = gen.at(HOUR, 4500) + [HOUR, AFTER - timedelta(milliseconds=1), AFTER] + gen.at(BEFORE, 300)
    first = [gen.record(gen.raw(ts), gen.soon_after(ts)) for ts in times + gen.at(AFTER, 200)]
    first += [gen.record({**gen.raw(HOUR), "event_id": r["event"]["event_id"], "timestamp": r["event"]["timestamp"]},
                         _received(r) + timedelta(seconds=5)) for r in first[:100]]
    # Batch 1: clients' retries, received later (must lose), and same-instant duplicates on a higher
    # partition with other properties (must lose the tie).
    retries = [gen.record({**_raw_of(r), "page": "/retry"}, _received(r) + timedelta(seconds=30))
               for r in first[100:400]]
    ties = [gen.record({**_raw_of(r), "properties": {"copy": 2}}, _received(r), partition=3) for r in first[400:450]
            if r["partition"] < 3]
    _write_batch(inbox, "batch-0", first)
    _write_batch(inbox, "batch-1", retries + ties)
    landed = Landed(first + retries + ties)
    _land(spark, settings, inbox)
    stray = _drop_stray_file(settings, fs)

    by_hour = landing_files_by_hour(settings)
    assert set(by_hour) == {BEFORE, HOUR, AFTER}
    assert len(by_hour[HOUR]) >= 2 and stray not in {fs_path(f) for f in by_hour[HOUR]}
    assert set(unarchived_landing_files(settings)) == {BEFORE, HOUR, AFTER}

    result = archive_hour(settings, HOUR)
    manifest = _check_published(settings, HOUR, landed, result)
    assert result.rows > 4000

    # Re-running with the same landing files changes nothing but the file names: one new commit replaced them.
    again = archive_hour(settings, HOUR)
    assert again.checksum == result.checksum and again.rows == result.rows and again.version == result.version + 1
    assert set(again.files).isdisjoint(result.files)
    assert set(partition_files(settings, ARCHIVE_TABLE, [HOUR])) == set(again.files)
    _check_published(settings, HOUR, landed, again)

    # Neighbours and an hour without landing files (empty manifest, no data files).
    for hour in (BEFORE, AFTER):
        _check_published(settings, hour, landed, archive_hour(settings, hour))
    empty = archive_hour(settings, EMPTY_HOUR)
    assert (empty.rows, empty.files, empty.landing_files) == (0, [], [])
    assert archived_hour(settings, EMPTY_HOUR).provenance["rows"] == 0 and verify_hour(settings, EMPTY_HOUR) == []
    assert unarchived_landing_files(settings) == {}

    # DuckDB through the documented view, straight over the archive's paths.
    con = lake_connection(settings)
    per_hour = dict(con.sql("SELECT hour, count(*) FROM events WHERE dt = DATE '2024-05-01' GROUP BY hour").fetchall())
    assert per_hour == {h.hour: len(landed.truth(h)) for h in (BEFORE, HOUR, AFTER)}
    distinct = con.sql("SELECT count(DISTINCT (tenant, event_id)) FROM events WHERE dt = DATE '2024-05-01' "
                       "AND hour = 22")
    assert distinct.fetchone() == (len(landed.truth(HOUR)),)
    con.close()
    # Spark 4.3 (no Delta reader for it): the live files from the table's log, partitions from their folders.
    files = [spark_uri(f) for f in partition_files(settings, ARCHIVE_TABLE)]
    spark_counts = (spark.read.option("basePath", spark_uri(archive_path(settings))).parquet(*files)
                    .groupBy("dt", "hour").count().collect())
    assert {(str(r["dt"]), r["hour"]): r["count"] for r in spark_counts} == {
        ("2024-05-01", h.hour): len(landed.truth(h)) for h in (BEFORE, HOUR, AFTER)}

    # Late events for the hour land later: the sensor's view shows exactly the new files, and
    # archiving again takes them in.
    late = [gen.record(gen.raw(ts), AFTER + timedelta(minutes=20)) for ts in gen.at(HOUR, 250)]
    late += [gen.record(_raw_of(r), AFTER + timedelta(minutes=20)) for r in first[:20]]  # retried much later
    _write_batch(inbox, "batch-2", late)
    landed = Landed(landed.records + late)
    _land(spark, settings, inbox)
    new_files = sorted(set(landing_files_by_hour(settings)[HOUR]) - set(manifest["landing_files"]))
    assert new_files and unarchived_landing_files(settings) == {HOUR: new_files}
    after_late = archive_hour(settings, HOUR)
    assert after_late.rows == len(landed.truth(HOUR)) == result.rows + 250
    assert after_late.checksum != result.checksum
    _check_published(settings, HOUR, landed, after_late)
    assert unarchived_landing_files(settings) == {}

    # Time travel: the table as of the version before the late events still answers the old numbers.
    before_late = after_late.version - 1
    for as_of, expected in ((before_late, result.rows), (after_late.version, after_late.rows), (None, after_late.rows)):
        con = lake_connection(settings, as_of=as_of)
        count = con.sql("SELECT count(*) FROM events WHERE dt = DATE '2024-05-01' AND hour = 22").fetchone()
        con.close()
        assert count == (expected,), as_of


def _received(record: dict[str, Any]) -> datetime:
    return _parse(record["event"]["received_at"])


def _raw_of(record: dict[str, Any]) -> dict[str, Any]:
    """The client's event behind a normalized one (to send it again, as a retry would)."""
    event = record["event"]
    raw = {k: event[k] for k in ("event_id", "tenant", "event", "timestamp", "user_id", "page", "country", "device",
                                 "revenue")}
    if event["properties"]:
        raw["properties"] = json.loads(event["properties"])
    return raw
