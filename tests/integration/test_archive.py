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

import hashlib
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
from batch.archive import archive_hour, published_files, verify_hour
from common.events import EVENT_ARROW_SCHEMA, normalize_event
from common.lake import (
    MANIFEST_NAME,
    archive_hour_path,
    archive_path,
    committed_files,
    fs_path,
    hour_partition,
    lake_filesystem,
    landing_files_by_hour,
    landing_path,
    read_manifest,
    spark_uri,
    unarchived_landing_files,
)
from common.settings import Settings
from common.spark import spark_session
from stack.maven import spark_s3_jars
from storage_tiers.lake.sql import lake_connection
from stream.job import landing_writer, parse_events
from tests.integration.own_services import free_pair, minio_alone

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
# Small files and row groups so a few thousand events exercise several of each.
ROW_GROUP_ROWS, ROWS_PER_FILE = 500, 2000
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
    session = spark_session(minio, "test-archive", [str(p) for p in spark_s3_jars(minio, progress=print)])
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
    monkeypatch.setattr(archive, "ROWS_PER_FILE", ROWS_PER_FILE)


# ------------------------------------------------------------------------- landing and ground truth


@dataclass
class Landed:
    """Every Kafka record the test handed to the landing, with the stream's parsed form."""

    records: list[dict[str, Any]]  # {"event": normalized event, "partition", "offset"}

    def truth(self, hour: datetime) -> dict[str, dict[str, Any]]:
        """One row per event_id of ``hour``: first received, then lowest partition/offset."""
        best: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        for rec in self.records:
            event = rec["event"]
            if _parse(event["timestamp"]).replace(minute=0, second=0, microsecond=0) != hour:
                continue
            key = (_parse(event["received_at"]), rec["partition"], rec["offset"])
            if event["event_id"] not in best or key < best[event["event_id"]][0]:
                best[event["event_id"]] = (key, event)
        return {event_id: _as_row(event) for event_id, (_, event) in best.items()}

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


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


def _check_published(settings: Settings, hour: datetime, landed: Landed, result: archive.ArchiveResult) -> dict:
    """Everything a reader relies on, for one published hour; returns its manifest."""
    fs = lake_filesystem(settings)
    truth = landed.truth(hour)
    folder = fs_path(archive_hour_path(settings, hour))
    manifest = read_manifest(settings, hour)
    assert manifest is not None

    # Rows: exactly the distinct events of the hour, each as first received; the stray file is not read.
    assert result.rows == manifest["rows"] == len(truth)
    assert result.landing_rows == manifest["landing_rows"] == landed.rows_in(hour)
    assert manifest["duplicates_dropped"] == landed.rows_in(hour) - len(truth)
    rows: list[dict[str, Any]] = []
    for name in (f["path"] for f in manifest["files"]):
        rows.extend(pq.read_table(f"{folder}/{name}", filesystem=fs).to_pylist())
    assert {r["event_id"]: r for r in rows} == truth
    assert len(rows) == len(truth)
    assert not [r for r in rows if r["event_id"].startswith("stray-")]

    # Order: sorted by tenant, event, timestamp (then event_id) across the files in manifest order.
    keys = [(r["tenant"], r["event"], r["timestamp"], r["event_id"]) for r in rows]
    assert keys == sorted(keys)

    # Files: zstd, bounded row groups and files, the event contract's schema, sizes and sha256 as listed.
    listed = {f["path"]: f for f in manifest["files"]}
    assert len(listed) == -(-len(truth) // ROWS_PER_FILE)
    for name, entry in listed.items():
        assert name.startswith(f"part-{result.extra['run_id']}-") and name.endswith(".zstd.parquet")
        data = _read(fs, f"{folder}/{name}")
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
        assert meta.num_rows == entry["rows"] <= ROWS_PER_FILE
        assert meta.schema.to_arrow_schema().remove_metadata() == EVENT_ARROW_SCHEMA
        for g in range(meta.num_row_groups):
            assert meta.row_group(g).num_rows <= ROW_GROUP_ROWS
            assert {meta.row_group(g).column(c).compression for c in range(meta.num_columns)} == {"ZSTD"}
    assert manifest["bytes"] == result.bytes == sum(f["bytes"] for f in manifest["files"])

    # Manifest: the hour, time range, checksum, landing files consumed (committed ones only), provenance.
    assert manifest["partition"] == hour_partition(hour)
    assert manifest["hour"] == hour.strftime("%Y-%m-%dT%H:00:00.000Z")
    times = [r["timestamp"] for r in truth.values()]
    assert result.min_event_time == (min(times) if times else None)
    assert result.max_event_time == (max(times) if times else None)
    assert manifest["min_event_time"] == (min(times).isoformat(timespec="milliseconds")[:-6] + "Z" if times else None)
    assert manifest["checksum"] == result.checksum and result.checksum.startswith("sha256:")
    committed = sorted(f for f in committed_files(landing_path(settings), fs) if f"/{hour_partition(hour)}/" in f)
    assert manifest["landing_files"] == result.landing_files == committed
    assert not [f for f in manifest["landing_files"] if "crashed-batch" in f]
    assert manifest["tool"]["name"] == "lakehouse.batch.archive" and manifest["tool"]["version"]
    assert datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00")) > datetime.now(UTC) - timedelta(
        minutes=10)
    assert result.manifest.endswith(f"{hour_partition(hour)}/{MANIFEST_NAME}")
    assert published_files(settings, hour) == result.files

    # One version: the folder holds exactly the listed files and the manifest; the files are intact.
    present = {i.base_name for i in fs.get_file_info(pafs.FileSelector(folder))}
    assert present == {*listed, MANIFEST_NAME}
    assert verify_hour(settings, hour) == []

    # Readers straight from the documented path: pyarrow.dataset / pandas over the hour folder.
    dataset = pads.dataset(folder, filesystem=fs, format="parquet")
    frame = dataset.to_table().to_pandas()
    assert len(frame) == frame["event_id"].nunique() == len(truth)
    return manifest


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
    assert len(manifest["files"]) >= 3 and result.rows > 4000

    # Re-running with the same landing files changes nothing but the file names.
    again = archive_hour(settings, HOUR)
    assert again.checksum == result.checksum and again.rows == result.rows
    assert set(again.files).isdisjoint(result.files)
    assert sorted(again.extra["deleted_files"]) == sorted(Path(f).name for f in result.files)
    _check_published(settings, HOUR, landed, again)

    # Neighbours and an hour without landing files (empty manifest, no data files).
    for hour in (BEFORE, AFTER):
        _check_published(settings, hour, landed, archive_hour(settings, hour))
    empty = archive_hour(settings, EMPTY_HOUR)
    assert (empty.rows, empty.files, empty.landing_files) == (0, [], [])
    assert read_manifest(settings, EMPTY_HOUR)["rows"] == 0 and verify_hour(settings, EMPTY_HOUR) == []
    assert unarchived_landing_files(settings) == {}

    # DuckDB through the documented view, straight over the archive's paths.
    con = lake_connection(settings)
    per_hour = dict(con.sql("SELECT hour, count(*) FROM events WHERE dt = DATE '2024-05-01' GROUP BY hour").fetchall())
    assert per_hour == {h.hour: len(landed.truth(h)) for h in (BEFORE, HOUR, AFTER)}
    distinct = con.sql("SELECT count(DISTINCT event_id) FROM events WHERE dt = DATE '2024-05-01' AND hour = 22")
    assert distinct.fetchone() == (len(landed.truth(HOUR)),)
    con.close()
    # Spark over the archive root (Hive partitions; it skips _manifest.json like every underscore file).
    spark_counts = spark.read.parquet(spark_uri(archive_path(settings))).groupBy("dt", "hour").count().collect()
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
