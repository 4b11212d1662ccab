"""The batch recompute runs unchanged on a real Spark standalone cluster, selected by ``spark_master``.

The architecture promises that the jobs tested in local mode run on a cluster by configuration only.
This test starts a standalone master and one worker from the pyspark wheel's own ``spark-class``
(``batch.spark_cluster``), points ``Settings.spark_master`` at it, runs ``batch.hourly.recompute_hour``
on archive-like Parquet files of one hour and checks every minute and hourly rollup against a ground
truth computed in plain Python from the generator's events — not from anything Spark produced. The
driver and the worker share the machine, so a local folder stands for the lake.

No other service of the stack is needed, so none is started.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark import SparkContext
from pyspark.sql import SparkSession

from batch.hourly import recompute_hour
from batch.spark_cluster import StandaloneCluster
from common.events import EVENT_ARROW_SCHEMA, normalize_event
from common.rollups import ROLLUP_KEYS
from common.settings import Settings
from common.spark import spark_session
from demo.archive_files import write_archive_hour
from demo.clickstream import Clickstream
from demo.ground_truth import minute_of, per_minute

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 11, 23, 9, tzinfo=UTC)
EVENTS_PER_MINUTE = 250
ARCHIVE_FILES = 3

Key = tuple[str, str, datetime, str, str, str]  # tenant, event, minute, country, device, page


def hour_of_events() -> list[dict[str, Any]]:
    """One hour of valid, distinct clickstream events, minute by minute (the archive is deduplicated)."""
    stream = Clickstream(seed=11)
    bodies: list[dict[str, Any]] = []
    for minute in range(60):
        end = HOUR + timedelta(minutes=minute + 1)
        batch = stream.batch(EVENTS_PER_MINUTE, end, disorder_s=60, duplicate_rate=0, malformed_rate=0)
        bodies += [e.body for e in batch]
    inside = [b for b in bodies if minute_of(b["timestamp"]) < HOUR + timedelta(hours=1)]
    assert len({b["event_id"] for b in inside}) == len(inside)
    return inside


def write_archive(settings: Settings, bodies: list[dict[str, Any]]) -> list[str]:
    """Normalize the events as ingestion does and write them like the archive: zstd Parquet files in the
    hour's Hive partition, sorted by tenant, event and time."""
    limits = {"now": HOUR + timedelta(hours=1), "max_age": timedelta(days=3650), "max_future": timedelta(minutes=5)}
    rows = [normalize_event(b, **limits) for b in bodies]
    columns = {f.name: pa.array([r[f.name] for r in rows]).cast(f.type) for f in EVENT_ARROW_SCHEMA}
    return write_archive_hour(settings, HOUR, pa.table(columns, schema=EVENT_ARROW_SCHEMA), ARCHIVE_FILES)


def expected_rollups(bodies: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Count, revenue and distinct users per full rollup key, from the generator's own events."""
    out: dict[Key, dict[str, Any]] = defaultdict(lambda: {"events": 0, "revenue": 0.0, "users": set()})
    for b in bodies:
        row = out[(b["tenant"], b["event"], minute_of(b["timestamp"]), b["country"], b["device"], b["page"])]
        row["events"] += 1
        row["revenue"] += float(b.get("revenue", 0.0))
        row["users"].add(str(b["user_id"]))
    return dict(out)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[StandaloneCluster]:
    with StandaloneCluster(tmp_path / "spark-standalone", cores=1, memory="1g") as running:
        yield running


@pytest.fixture
def cluster_spark(cluster: StandaloneCluster, tmp_path: Path) -> Iterator[tuple[SparkSession, Settings]]:
    """A session on the cluster. A SparkSession is a per-process singleton, so a local one left by an
    earlier test is stopped first, and ours is stopped afterwards so that later tests get a local one."""
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    if SparkContext._active_spark_context is not None:  # a session made in another thread is not "active" here
        SparkContext._active_spark_context.stop()
    settings = Settings(home=tmp_path / "home", lake_uri="", spark_master=cluster.master_url,
                        spark_conf=cluster.driver_conf)
    spark = spark_session(settings, "lakehouse-test-standalone")
    try:
        yield spark, settings
    finally:
        spark.stop()


def test_recompute_hour_on_standalone_cluster(
    cluster: StandaloneCluster, cluster_spark: tuple[SparkSession, Settings]
) -> None:
    spark, settings = cluster_spark
    bodies = hour_of_events()
    files = write_archive(settings, bodies)

    # The session really is the cluster's application, with an executor on the worker.
    assert spark.sparkContext.master == cluster.master_url
    app_id = spark.sparkContext.applicationId
    assert app_id.startswith("app-"), f"{app_id} is not a standalone application id"
    active = cluster.status()["activeapps"]
    assert [a["id"] for a in active] == [app_id]

    result = recompute_hour(spark, settings, HOUR, files)

    executor_dirs = list((cluster.work_dir / "worker" / app_id).glob("*/stderr"))
    assert executor_dirs, "no executor ran on the worker"
    assert any("Finished task" in p.read_text() for p in executor_dirs), "the worker's executor ran no task"

    # Raw events: every archived event once.
    assert result.events == len(bodies)
    assert sorted(result.raw_events["event_id"].to_pylist()) == sorted(b["event_id"] for b in bodies)

    # Minute rollups, row by row against the full-key ground truth.
    expected = expected_rollups(bodies)
    got: dict[Key, dict[str, Any]] = {}
    for r in result.minute_rollups.to_pylist():
        key = (r["tenant"], r["event"], r["minute"], r["country"], r["device"], r["page"])
        assert key not in got, f"duplicate rollup row {key}"
        got[key] = r
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        row = got[key]
        assert row["events"] == want["events"], key
        assert row["revenue"] == pytest.approx(want["revenue"], abs=1e-6), key
        assert set(row["user_ids"]) == want["users"], key
        assert len(row["user_ids"]) == len(want["users"]), f"user ids repeated in {key}"

    # What a dashboard sees per tenant and minute (the demo's own ground-truth helper).
    for tenant in {b["tenant"] for b in bodies}:
        truth = per_minute(bodies, tenant)
        seen: dict[datetime, dict[str, Any]] = defaultdict(lambda: {"events": 0, "revenue": 0.0, "users": set()})
        for key, row in got.items():
            if key[0] == tenant:
                seen[key[2]]["events"] += row["events"]
                seen[key[2]]["revenue"] += row["revenue"]
                seen[key[2]]["users"].update(row["user_ids"])
        assert seen.keys() == truth.keys() and len(truth) == 60
        for minute, want in truth.items():
            assert seen[minute]["events"] == want["events"], (tenant, minute)
            assert seen[minute]["revenue"] == pytest.approx(want["revenue"], abs=1e-6), (tenant, minute)
            assert seen[minute]["users"] == want["users"], (tenant, minute)

    # Hourly rollups: the warm table's current files (the recompute hands Spark's rows to the Delta table).
    warm_files = sorted(Path(uri.removeprefix("file://")) for uri in DeltaTable(result.warm_path).file_uris())
    assert warm_files, f"no hourly Parquet under {result.warm_path}"
    assert pq.ParquetFile(warm_files[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    hourly = pa.concat_tables(pq.read_table(f) for f in warm_files)
    assert hourly.num_rows == result.hourly_rows
    # Spark writes timestamps as INT96 by default, which readers see without a time zone: the values are UTC.
    hours = hourly["hour"] if hourly["hour"].type.tz else pc.assume_timezone(hourly["hour"], "UTC")
    assert set(pc.unique(hours.cast(pa.timestamp("s", tz="UTC"))).to_pylist()) == {HOUR}
    want_hourly: dict[tuple[str, ...], dict[str, Any]] = defaultdict(
        lambda: {"events": 0, "revenue": 0.0, "users": set()})
    for b in bodies:
        row = want_hourly[tuple(str(b[k]) for k in ROLLUP_KEYS)]
        row["events"] += 1
        row["revenue"] += float(b.get("revenue", 0.0))
        row["users"].add(str(b["user_id"]))
    got_hourly = {tuple(r[k] for k in ROLLUP_KEYS): r for r in hourly.to_pylist()}
    assert len(got_hourly) == hourly.num_rows == len(want_hourly)
    for key, want in want_hourly.items():
        row = got_hourly[key]
        assert row["events"] == want["events"], key
        assert row["revenue"] == pytest.approx(want["revenue"], abs=1e-6), key
        assert sorted(row["user_ids"]) == sorted(want["users"]), key

    # Once the session stops, the master lists the application as completed.
    spark.stop()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = cluster.status()
        if app_id in {a["id"] for a in status["completedapps"]}:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"{app_id} never showed as completed on {cluster.webui_url}/json")
    assert status["aliveworkers"] >= 1
