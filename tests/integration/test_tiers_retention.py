"""Seven and a half years of sparse history through the tiers, a legal hold, the purge, and the audit log.

Events of a handful of hours spread over 7.5 years (three tenants, one with a 3-year retention) are
landed by the stream's own Spark sink, archived and recomputed by the batch layer (the recent hours
through its Dagster assets, older ones by the same functions, before the hourly partitions start),
which also restates them into a real hot tier (chDB behind the hot node). The tier assets are then
materialized day by day "as of" now, a legal hold is placed on one tenant's old day, and the purge runs.

Ground truth is the generator's own bookkeeping (distinct event ids per tenant and hour), never the
system under test; the tiers are read back independently (pyarrow over the lake, SQL on the hot tier):
nothing past retention but the held data, every hour inside retention complete in the tier its age
calls for, daily rollups equal to the truth, ``verify`` passing, and failing with the seq of an
altered record. The full scenario runs on a local lake; a smaller one on MinIO also checks the S3
object tags, the conditional-put appends and tamper detection on S3.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from batch.archive import archive_hour, archive_session, published_files, verify_hour
from batch.hourly import recompute_hour
from batch.restate import restate_hour
from common.events import EVENT_ARROW_SCHEMA, normalize_event
from common.hot_store import FlightHotStore
from common.lake import (
    archive_path,
    audit_log_path,
    cold_events_path,
    fs_path,
    hour_partition,
    lake_filesystem,
    lake_uri,
    landing_path,
    rollups_daily_path,
    rollups_hourly_path,
    spark_uri,
)
from common.lake_duckdb import duckdb_uri
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    WarmTable,
    open_table,
    replace_partition,
    with_partition_columns,
)
from common.rollups import ROLLUP_SCHEMA
from common.settings import Settings
from common.sql_files import sql_sections
from orchestration.archive.assets import raw_events_archive
from orchestration.hours import LOAD_SETTINGS, partition_key, partitions_start
from orchestration.resources import lakehouse_resources
from orchestration.rollups.assets import rollups_hourly
from orchestration.tiers.assets import audit_log_intact, cold_tier, hot_tier_drop, retention_purge, rollups_daily
from orchestration.tiers.resources import tiers_resources
from stack import ensure_bucket
from stack.app_services import full_stack
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import place_hold
from storage_tiers.policy import DEFAULT_POLICY_FILE, load_policy
from storage_tiers.tiers.cold_files import day_files, object_tags
from stream.landing import landing_writer
from stream.records import parse_events
from tests.integration.own_services import free_pair
from tests.integration.stream_spark import stream_spark_session

pytestmark = pytest.mark.integration

KAFKA_RECORD = StructType([
    StructField("value", StringType()), StructField("partition", IntegerType()), StructField("offset", LongType()),
])
YEAR7 = 2557  # days: the default retention
AS_OF = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
TODAY = AS_OF.date()


@dataclass
class History:
    """What was sent: distinct events per (hour, tenant), the ground truth every tier is checked against."""

    settings: Settings
    rng: random.Random
    records: list[dict] = field(default_factory=list)
    truth: Counter = field(default_factory=Counter)  # (hour, tenant) → distinct events
    offsets: int = 0

    def add(self, days_back: int, hour: int, tenant: str, n: int) -> datetime:
        start = datetime.combine(TODAY - timedelta(days=days_back), datetime.min.time(), UTC) + timedelta(hours=hour)
        for _ in range(n):
            ts = start + timedelta(milliseconds=self.rng.randrange(3_600_000))
            raw = {"event_id": str(uuid.uuid4()), "tenant": tenant, "event": self.rng.choice(["page_view", "click"]),
                   "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                   "user_id": f"u{self.rng.randrange(40)}", "page": self.rng.choice(["/", "/docs"]),
                   "country": self.rng.choice(["FR", "US"]), "device": "mobile", "revenue": 1.5}
            copies = 2 if self.rng.random() < 0.1 else 1  # resent duplicates: the archive keeps one
            for _ in range(copies):
                event = normalize_event(raw, now=ts + timedelta(seconds=2), max_age=timedelta(days=30),
                                        max_future=timedelta(seconds=300))
                self.offsets += 1
                self.records.append({"value": json.dumps(event), "partition": 0, "offset": self.offsets})
        self.truth[(start, tenant)] += n
        return start

    @property
    def hours(self) -> list[datetime]:
        return sorted({h for h, _ in self.truth})


# ------------------------------------------------------------------------------------- services


class Phases:
    """Prints how long each phase took (the figures quoted in docs/architecture.md come from here)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        print(f"phase {name}: {now - self.last:.1f}s", flush=True)
        self.last = now


def _settings(home: Path, lake_uri: str, minio_port: int, policy: Path | None = None) -> Settings:
    api, redis = free_pair(), free_pair()
    return Settings(home=home, lake_uri=lake_uri, s3_endpoint=f"http://127.0.0.1:{minio_port}", api_port=api,
                    hot_node_url=f"grpc://127.0.0.1:{api + 1}", redis_url=f"redis://127.0.0.1:{redis}/0",
                    kafka_bootstrap=f"127.0.0.1:{free_pair()}", tier_policy=str(policy or ""))


@contextmanager
def hot_node(settings: Settings, minio: bool) -> Iterator[FlightHotStore]:
    """The API/hot node (owner of its own chDB) and, for an S3 lake, MinIO: nothing else of the stack."""
    env = {"LAKEHOUSE_HOME": str(settings.home), "LAKEHOUSE_API_PORT": str(settings.api_port),
           "LAKEHOUSE_HOT_NODE_URL": settings.hot_node_url, "LAKEHOUSE_REDIS_URL": settings.redis_url,
           "LAKEHOUSE_S3_ENDPOINT": settings.s3_endpoint, "LAKEHOUSE_LAKE_URI": settings.lake_uri,
           "LAKEHOUSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the services' processes read their settings from the environment
    names = ["minio", "api"] if minio else ["api"]
    stack = full_stack(settings)
    try:
        stack.up(names)
        if minio:
            ensure_bucket(settings)
        store = FlightHotStore.for_settings(settings)
        yield store
        store.close()
    finally:
        stack.down(names)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def minio_port() -> int:
    return free_pair()


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory, minio_port: int) -> Iterator[SparkSession]:
    """The local lake scenario's Spark session (the stream's landing sink and the hourly recompute)."""
    settings = _settings(tmp_path_factory.mktemp("spark"), "", minio_port)
    session = stream_spark_session(settings, "test-tiers")
    yield session
    session.stop()


# ---------------------------------------------------------------------------------- history


def land(spark: SparkSession, settings: Settings, history: History, inbox: Path) -> None:
    """The stream's landing sink (an availableNow run) writes the events into their hours' folders."""
    inbox.mkdir(parents=True)
    (inbox / "batch-0.json").write_text("\n".join(json.dumps(r) for r in history.records) + "\n")
    records = spark.readStream.schema(KAFKA_RECORD).json(str(inbox))
    query = landing_writer(parse_events(records, settings), settings, f"{settings.effective_checkpoint_dir}/landing") \
        .trigger(availableNow=True).start()
    query.awaitTermination(timeout=300)
    assert query.exception() is None, query.exception()


def batch_hours(spark: SparkSession, settings: Settings, store: FlightHotStore, hours: list[datetime]) -> None:
    """Archive and recompute each hour: through the Dagster assets once the hourly partitions exist, else directly."""
    first = partitions_start(LOAD_SETTINGS)
    resources = lakehouse_resources(settings)
    for hour in hours:
        if hour >= first:
            result = dg.materialize([raw_events_archive, rollups_hourly], partition_key=partition_key(hour),
                                    resources=resources)
            assert result.success
            continue
        archive_hour(settings, hour, progress=lambda _: None)
        recompute = recompute_hour(spark, settings, hour, published_files(settings, hour) or [])
        restate_hour(store, hour, recompute.minute_rollups, recompute.raw_events,
                     session_gap_minutes=settings.session_gap_minutes)
        assert verify_hour(settings, hour) == []


LANDING_SCHEMA = pa.schema([*EVENT_ARROW_SCHEMA, ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64())])


def land_directly(settings: Settings, history: History, batch: int = 0) -> None:
    """Landing files and their ``_spark_metadata`` commit log as the stream's sink writes them, without Spark.

    On MinIO the S3A sink took a minute here for a handful of rows (Spark's sink on MinIO is proven by
    test_lake_on_minio); the archive job then reads these exactly as it reads the sink's own.
    """
    fs = lake_filesystem(settings)
    root = fs_path(landing_path(settings))
    by_hour: dict[datetime, list[dict]] = {}
    for record in history.records:
        event = json.loads(record["value"])
        row = {**event, "kafka_partition": record["partition"], "kafka_offset": record["offset"]}
        for column in ("timestamp", "received_at"):
            row[column] = datetime.fromisoformat(event[column].replace("Z", "+00:00"))
        by_hour.setdefault(row["timestamp"].replace(minute=0, second=0, microsecond=0), []).append(row)
    log = ["v1"]
    for hour, rows in sorted(by_hour.items()):
        path = f"{root}/{hour_partition(hour)}/part-00000-{uuid.uuid4()}.c000.zstd.parquet"
        if isinstance(fs, pafs.LocalFileSystem):  # S3 has no folders to make
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=LANDING_SCHEMA), path, filesystem=fs, compression="zstd")
        log.append(json.dumps({"path": spark_uri(lake_uri(fs, path)), "size": fs.get_file_info(path).size,
                               "isDir": False, "modificationTime": 0, "blockReplication": 1, "blockSize": 0,
                               "action": "add"}))
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(f"{root}/_spark_metadata", recursive=True)
    with fs.open_output_stream(f"{root}/_spark_metadata/{batch}") as sink:
        sink.write(("\n".join(log) + "\n").encode())


def batch_hours_with_duckdb(settings: Settings, store: FlightHotStore, hours: list[datetime]) -> None:
    """Archive each hour (batch.archive), recompute it with the DuckDB twin of the Spark job
    (sql/duckdb/rollups_minute.sql, shown row-identical by bench/recompute_hour.py) and restate the hot tier."""
    sql = sql_sections("duckdb/rollups_minute.sql")
    for hour in hours:
        archive_hour(settings, hour, progress=lambda _: None)
        files = [duckdb_uri(f) for f in published_files(settings, hour) or []]
        # The hourly section's SELECT (without its COPY … TO): its rows go to the warm Delta table, one commit.
        hourly_select = sql["rollups_hourly"].split("COPY (", 1)[1].rsplit(") TO", 1)[0]
        con = archive_session(settings)
        try:
            con.execute(sql["timezone"])
            con.execute(sql["events"], {"files": files})
            minute = con.execute(sql["rollups_minute"]).to_arrow_table().cast(ROLLUP_SCHEMA)
            hourly = con.execute(hourly_select).to_arrow_table().select(ROLLUPS_HOURLY_SCHEMA.names).cast(
                ROLLUPS_HOURLY_SCHEMA)
            raw = con.execute(sql["raw_events"]).to_arrow_table().cast(EVENT_ARROW_SCHEMA)
        finally:
            con.close()
        replace_partition(settings, ROLLUPS_HOURLY_TABLE, hour,
                          with_partition_columns(hourly, ROLLUPS_HOURLY_TABLE, hour), "recompute", {"test": True})
        restate_hour(store, hour, minute, raw, session_gap_minutes=settings.session_gap_minutes)
        assert verify_hour(settings, hour) == []


def move_days(settings: Settings, days: list[date],
              fail_ok: frozenset[date] = frozenset()) -> dict[date, dg.ExecuteInProcessResult]:
    resources = {**lakehouse_resources(settings), **tiers_resources(settings, as_of=AS_OF.isoformat())}
    results = {}
    for day in days:
        result = dg.materialize([hot_tier_drop, rollups_daily, cold_tier], partition_key=day.isoformat(),
                                resources=resources, raise_on_error=False)
        assert result.success or day in fail_ok, f"tier movers failed for {day}"
        results[day] = result
    return results


def purge(settings: Settings) -> dg.ExecuteInProcessResult:
    # the history is sparse (a few days over 7.5 years), so this purge touches most of the lake's days:
    # above LAKEHOUSE_PURGE_MAX_SHARE, it must be confirmed (tests/unit/test_purge_guards.py proves the refusal)
    resources = {**lakehouse_resources(settings),
                 **tiers_resources(settings, as_of=AS_OF.isoformat(), confirm_large_purge=True)}
    result = dg.materialize([retention_purge, audit_log_intact], resources=resources)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [("audit_log_intact", True)]
    return result


# ------------------------------------------------------------------------- reading the tiers back


def _read_all(fs: pafs.FileSystem, root: str) -> pa.Table | None:
    """Every Parquet file under ``root``, read straight from storage (for a Delta table: also files that no
    version reads any more but vacuum has not removed yet, which is why warm tables use ``_read_table``)."""
    infos = fs.get_file_info(pafs.FileSelector(fs_path(root), allow_not_found=True, recursive=True))
    files = [i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
             and not i.base_name.startswith((".", "_")) and "/_delta_log/" not in i.path]
    tables = [_plain_strings(pq.read_table(f, filesystem=fs)) for f in files]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _plain_strings(table: pa.Table) -> pa.Table:
    """Files delta-rs rewrote (a delete) hold Arrow string_view columns: the same strings, another Arrow type."""
    return table.cast(pa.schema([
        pa.field(f.name, pa.string()) if f.type == pa.string_view()
        else pa.field(f.name, pa.list_(pa.string())) if pa.types.is_list(f.type) or pa.types.is_list_view(f.type)
        else f for f in table.schema]))


def _read_table(settings: Settings, table: WarmTable) -> pa.Table | None:
    """A warm Delta table's newest version, read the documented pandas/pyarrow way (its pyarrow dataset)."""
    delta = open_table(settings, table)
    return None if delta is None else delta.to_pyarrow_dataset().to_table()


def _counts(table: pa.Table | None, time_column: str, unit: str, measure: str | None = None) -> Counter:
    out: Counter = Counter()
    if table is None or table.num_rows == 0:
        return out
    keys = pc.floor_temporal(table[time_column], unit=unit).to_pylist()
    values = table[measure].to_pylist() if measure else [1] * table.num_rows
    for key, tenant, value in zip(keys, table["tenant"].to_pylist(), values, strict=True):
        out[(key.astimezone(UTC), tenant)] += int(value)
    return out


def lake_contents(settings: Settings) -> dict[str, Counter]:
    return {
        "warm events": _counts(_read_table(settings, ARCHIVE_TABLE), "timestamp", "hour"),
        "cold events": _counts(_read_table(settings, COLD_EVENTS_TABLE), "timestamp", "hour"),
        "warm hourly rollups": _counts(_read_table(settings, ROLLUPS_HOURLY_TABLE), "hour", "hour", "events"),
        "cold daily rollups": _counts(_read_table(settings, COLD_ROLLUPS_DAILY_TABLE), "day", "day", "events"),
    }


def hot_contents(store: FlightHotStore) -> dict[str, Counter]:
    out = {}
    for table, hour_expr, measure in (("events_raw", "toStartOfHour(toDateTime(timestamp))", "count()"),
                                      ("rollups_1m", "toStartOfHour(minute)", "sum(events)"),
                                      ("rollups_1h", "hour", "sum(events)")):
        rows = store.query_arrow(f"SELECT toUnixTimestamp({hour_expr}) AS h, tenant, {measure} AS n "
                                 f"FROM {table} GROUP BY h, tenant").to_pylist()
        out[f"hot {table}"] = Counter({(datetime.fromtimestamp(r["h"], UTC), r["tenant"]): int(r["n"]) for r in rows})
    return out


def expected_contents(history: History, settings: Settings, held: set[tuple[str, date]],
                      with_hot: bool) -> dict[str, Counter]:
    """Where every (hour, tenant) of the truth must be after movers and purge, from the policy's horizons."""
    policy = load_policy(settings)
    out: dict[str, Counter] = {k: Counter() for k in ("warm events", "cold events", "warm hourly rollups",
                                                        "cold daily rollups")}
    if with_hot:
        out |= {"hot events_raw": Counter(), "hot rollups_1m": Counter(), "hot rollups_1h": Counter()}
    for (hour, tenant), n in history.truth.items():
        end_of_day = datetime.combine(hour.date(), datetime.min.time(), UTC) + timedelta(days=1)
        if end_of_day <= AS_OF - policy.retention_for(tenant) and (tenant, hour.date()) not in held:
            continue  # purged everywhere
        age = AS_OF - (hour + timedelta(hours=1))
        day_age = AS_OF - end_of_day
        out["cold daily rollups"][(datetime.combine(hour.date(), datetime.min.time(), UTC), tenant)] += n
        if day_age >= timedelta(days=365):
            out["cold events"][(hour, tenant)] += n
        else:
            out["warm events"][(hour, tenant)] += n
            out["warm hourly rollups"][(hour, tenant)] += n
        if with_hot:
            if age < timedelta(days=7):
                out["hot events_raw"][(hour, tenant)] += n
                out["hot rollups_1m"][(hour, tenant)] += n
            if age < timedelta(days=90):
                out["hot rollups_1h"][(hour, tenant)] += n
    return out


def _tamper(settings: Settings, log: AuditLog, seq: int) -> None:
    """Change one field of one record in place, as someone with write access to the lake could."""
    path = f"{fs_path(audit_log_path(settings))}/{seq:012d}.json"
    fs = lake_filesystem(settings)
    with fs.open_input_stream(path) as stream:
        record = json.loads(stream.read())
    record["rows"] = int(record["rows"]) + 1
    body = json.dumps(record).encode()
    if isinstance(fs, pafs.S3FileSystem):
        with fs.open_output_stream(path) as sink:
            sink.write(body)
    else:
        os.chmod(path, 0o644)
        Path(path).write_bytes(body)


def _assert_audit(settings: Settings, actions: set[str]) -> AuditLog:
    log = AuditLog(settings)
    result = log.verify()
    assert result.ok, str(result)
    seen = {r["action"] for r in log.records()}
    assert actions <= seen, f"missing audit actions: {actions - seen}"
    for record in log.records():
        assert record["at"] and "prev_hash" in record and len(record["hash"]) == 64
    return log


# ---------------------------------------------------------------------------------------- tests


def test_seven_years_through_the_tiers_with_a_legal_hold_on_a_local_lake(
    spark: SparkSession, tmp_path: Path, minio_port: int
) -> None:
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["retention"]["tenants"] = {"gamma": "3y"}
    policy_file = tmp_path / "tiers.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    settings = _settings(tmp_path / "home", "", minio_port, policy_file)
    history = History(settings, random.Random(5))
    held_day = TODAY - timedelta(days=YEAR7 + 200)
    plan = [  # (days back, hour, tenant, events)
        (YEAR7 + 200, 9, "acme", 30), (YEAR7 + 200, 9, "beta", 20),  # past retention; acme held
        (YEAR7 + 30, 13, "acme", 25), (YEAR7 + 30, 13, "beta", 15),  # past retention
        (YEAR7 - 20, 3, "acme", 20), (YEAR7 - 20, 3, "beta", 10), (YEAR7 - 20, 3, "gamma", 12),  # gamma: 3y
        (5 * 365, 22, "beta", 18),
        (730, 0, "acme", 14), (730, 23, "gamma", 16),
        (400, 11, "beta", 21), (400, 11, "gamma", 9),
        (200, 17, "acme", 19),
        (30, 8, "beta", 17),
        (2, 10, "acme", 23), (2, 10, "beta", 11),
    ]
    for days_back, hour, tenant, n in plan:
        history.add(days_back, hour, tenant, n)
    phase = Phases()
    with hot_node(settings, minio=False) as store:
        phase("hot node up")
        land(spark, settings, history, tmp_path / "inbox")
        phase("landing")
        batch_hours(spark, settings, store, history.hours)
        phase(f"archive + recompute + restate of {len(history.hours)} hours")
        # An hour that only the hot tier holds (never archived): the mover must keep it.
        orphan = datetime.combine(TODAY - timedelta(days=10), datetime.min.time(), UTC) + timedelta(hours=6)
        store.insert_arrow("events_raw", pa.Table.from_pylist([
            {"tenant": "beta", "event": "click", "timestamp": orphan + timedelta(minutes=i), "event_id": f"o{i}",
             "user_id": "u1", "page": "/", "country": "FR", "device": "mobile", "revenue": 0.0, "properties": "{}",
             "received_at": orphan + timedelta(minutes=i)} for i in range(5)], schema=EVENT_ARROW_SCHEMA))
        days = sorted({h.date() for h in history.hours} | {orphan.date()})
        results = move_days(settings, days, fail_ok=frozenset({orphan.date()}))
        phase(f"tier movers for {len(days)} days")
        failed = results[orphan.date()]
        assert not failed.success
        failure = next(e for e in failed.all_events if e.is_step_failure)
        assert "events_raw dt=" in str(failure.step_failure_data.error) and "hour=06" in \
            str(failure.step_failure_data.error)

        log = AuditLog(settings)
        hold = place_hold(log, "acme", (held_day - timedelta(days=1)).isoformat(),
                          (held_day + timedelta(days=1)).isoformat(), "case 2019-17", placed_by="test")
        purge(settings)
        phase("hold + purge")

        actual = {**lake_contents(settings), **hot_contents(store)}
        expected = expected_contents(history, settings, {("acme", held_day)}, with_hot=True)
        expected["hot events_raw"][(orphan, "beta")] = 5  # kept: the lake never got it
        for name in expected:
            assert dict(actual[name]) == dict(expected[name]), name
        # The held day survived as its tenant's only data past retention; the others of that day are gone.
        assert actual["cold events"][(datetime.combine(held_day, datetime.min.time(), UTC) + timedelta(hours=9),
                                      "acme")] == 30

        log = _assert_audit(settings, {"restate", "drop_hot", "compact_cold", "mark_cold", "move", "hold_placed",
                                       "purge"})
        assert any(r["action"] == "hold_placed" and r["details"]["hold_id"] == hold.hold_id for r in log.records())
        purges = [r for r in log.records() if r["action"] == "purge"]
        assert sum(r["rows"] for r in purges if r["tier_from"] == "cold" and r["dataset"] == "events") == \
            sum(n for (days_back, _, tenant, n) in plan if days_back > YEAR7 and not
                (tenant == "acme" and days_back == YEAR7 + 200)) + 12  # + gamma's day past its 3 years
        victim = purges[0]["seq"]
        _tamper(settings, log, victim)
        result = AuditLog(settings).verify()
        assert not result.ok
        assert any(p.startswith(f"record {victim:012d}: hash mismatch") for p in result.problems), result.problems


def test_tiers_and_purge_on_minio_tag_cold_objects_and_detect_tampering(tmp_path: Path, minio_port: int) -> None:
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["retention"]["tenants"] = {"trial": "10d"}  # a trial tenant's data goes while still warm and hot
    policy_file = tmp_path / "tiers.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    settings = _settings(tmp_path / "home", f"s3://tiers/{uuid.uuid4().hex[:8]}", minio_port, policy_file)
    history = History(settings, random.Random(7))
    held_day = TODAY - timedelta(days=YEAR7 + 100)
    plan = [(YEAR7 + 100, 5, "acme", 12), (YEAR7 + 100, 5, "beta", 8), (YEAR7 + 40, 7, "beta", 9),
            (730, 12, "acme", 10), (100, 20, "beta", 11), (20, 14, "beta", 6), (20, 14, "trial", 5)]
    added = [(days_back, history.add(days_back, hour, tenant, n)) for days_back, hour, tenant, n in plan]
    shared = {hour for days_back, hour in added if days_back == 20}  # beta and trial share this hour
    phase = Phases()
    with hot_node(settings, minio=True) as store:
        phase("MinIO and hot node up")
        land_directly(settings, history)
        phase("landing")
        batch_hours_with_duckdb(settings, store, history.hours)
        phase(f"archive + recompute (DuckDB) + restate of {len(history.hours)} hours")
        move_days(settings, sorted({h.date() for h in history.hours}))
        phase("tier movers")
        place_hold(AuditLog(settings), "acme", held_day.isoformat(), held_day.isoformat(), "case 7", placed_by="test")
        purge(settings)
        phase("hold + purge")

        actual = {**lake_contents(settings), **hot_contents(store)}
        expected = expected_contents(history, settings, {("acme", held_day)}, with_hot=True)
        for name in expected:
            assert dict(actual[name]) == dict(expected[name]), name
        # Erasure is physical: after the purge's vacuum, every Parquet file left under the warm tables (read
        # straight from storage, not through the log) holds exactly the live rows, so none of the trial tenant's;
        # the same for the cold tables.
        fs = lake_filesystem(settings)
        for name, root, time_column, measure in (("warm events", archive_path(settings), "timestamp", None),
                                                 ("warm hourly rollups", rollups_hourly_path(settings), "hour",
                                                  "events"),
                                                 ("cold events", cold_events_path(settings), "timestamp", None),
                                                 ("cold daily rollups", rollups_daily_path(settings), "day",
                                                  "events")):
            stored = _read_all(fs, root)
            unit = "day" if name == "cold daily rollups" else "hour"
            assert dict(_counts(stored, time_column, unit, measure)) == dict(actual[name]), name
            assert stored is None or "trial" not in set(stored["tenant"].to_pylist()), name
        # The trial tenant's rows were cut out of an hour it shares with beta: the archive hour was republished
        # (new file, new manifest and content checksum) and still verifies; hot rollups_1h lost only its rows.
        (hour,) = shared
        assert verify_hour(settings, hour) == []
        trial = [r for r in AuditLog(settings).records()
                 if r["action"] == "purge" and "trial" in r["details"]["tenants"]]
        assert {(r["dataset"], r["tier_from"], r["details"]["whole_partition"]) for r in trial} == {
            ("events", "warm", False), ("rollups_hourly", "warm", False), ("rollups_hourly", "hot", False),
            ("rollups_daily", "cold", False), ("day_sketches", "cold", False), ("landing", "landing", False)}

        # Cold objects carry the policy's tags, also those the purge rewrote (the held day lost beta's rows).
        for cold_day in (TODAY - timedelta(days=730), held_day):
            for table in (COLD_EVENTS_TABLE, COLD_ROLLUPS_DAILY_TABLE):
                files = day_files(settings, table, cold_day)
                assert files, (table.name, cold_day)
                for uri in files:
                    assert object_tags(settings, uri) == {"lakehouse-tier": "cold"}, (uri, cold_day)
        log = _assert_audit(settings, {"drop_hot", "compact_cold", "mark_cold", "move", "hold_placed", "purge"})
        mark = next(r for r in log.records() if r["action"] == "mark_cold")
        assert mark["details"]["tags"] == {"lakehouse-tier": "cold"}
        # Appends are create-if-absent on S3 (If-None-Match: *): an existing seq is never overwritten.
        assert not log._log.create(f"{1:012d}.json", b"{}")  # the primitive under test
        before = len(log.records())
        writers = [threading.Thread(target=lambda name=name: [
            AuditLog(settings).append("restate", "rollups_hourly", partition=f"{name}-{i}", run_id=name)
            for i in range(5)]) for name in ("w1", "w2", "w3")]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        records = AuditLog(settings).records()
        assert [r["seq"] for r in records] == list(range(1, before + 16))  # 15 racing appends, no fork, no loss
        assert AuditLog(settings).verify().ok
        victim = log.records()[-2]["seq"]
        _tamper(settings, log, victim)
        result = AuditLog(settings).verify()
        assert not result.ok and any(p.startswith(f"record {victim:012d}") for p in result.problems)
