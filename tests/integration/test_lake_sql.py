"""DuckDB over the lake: the views, ``lakehouse sql`` and the API's warm/cold path, on a local lake and MinIO.

The lake is written here in the agreed layout (the Delta tables: archive hours, cold days, warm hourly rollups,
cold daily rollups) from one synthetic event list, and every answer is compared
with a ground truth computed in Python from that list. Six days cover the tier boundary cases:

* D1–D3: cold only (committed to the cold events table);
* D4: cold committed and still in the archive (a move in progress): must count once, from cold;
* D5: in the archive, a cold data file written in the table's folder but never committed (a move that failed
  before its commit): must count once, from the archive;
* D6: archive only.

Warm hourly rollups exist for D4–D6, cold daily rollups for D1–D4. Pruning is proven twice: DuckDB's
EXPLAIN ANALYZE counts the files a filtered query reads, and with the files of other days replaced by
garbage a filtered query still answers right while an unfiltered one fails.

The API's warm/cold answers are checked the way the API computes them: ``QueryEngine.run`` with a forced
tier, its SQL from ``serving.query.sql_compile`` read through ``storage_tiers.lake.reader`` (the range's folders
only, through the rollups' table macros), against a ground truth computed from the event list.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from cli.main import main as cli_main
from common.events import EVENT_ARROW_SCHEMA
from common.lake import (
    archive_path,
    cold_events_path,
    fs_path,
    is_s3,
    lake_filesystem,
    rollups_daily_path,
    rollups_hourly_path,
)
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_TABLE,
    open_table,
    replace_partition,
    with_partition_columns,
)
from common.settings import REPO_ROOT, Settings
from serving.query.engine import QueryEngine
from serving.query.spec import METRICS, QuerySpec, SpecInput, build_spec
from serving.query.sql_compile import compile_segment
from serving.query.tier_routing import Horizons, plan
from storage_tiers.lake.reader import LakeRollupReader
from storage_tiers.lake.sql import files_read, lake_connection, lake_query
from storage_tiers.tiers.cold_files import EVENTS_SORT, ROLLUP_KEYS, publish_day
from tests.integration.own_services import free_pair, minio_alone

pytestmark = pytest.mark.integration

BUCKET = "lake-sql-test"
DAYS = [date(2024, 3, d) for d in range(1, 7)]
D1, D2, D3, D4, D5, D6 = DAYS
HOURS = (0, 7, 23)
COLD_PUBLISHED, IN_ARCHIVE, COLD_UNPUBLISHED = DAYS[:4], DAYS[3:], [D5]
WARM_HOURLY_DAYS, COLD_DAILY_DAYS = DAYS[3:], DAYS[:4]
HOURLY_SCHEMA = pa.schema([("tenant", pa.string()), ("event", pa.string()), ("country", pa.string()),
                           ("device", pa.string()), ("page", pa.string()), ("hour", pa.timestamp("us", tz="UTC")),
                           ("events", pa.int64()), ("revenue", pa.float64()), ("user_ids", pa.list_(pa.string()))])
DAILY_SCHEMA = pa.schema([f if f.name != "hour" else pa.field("day", f.type) for f in HOURLY_SCHEMA])


# ------------------------------------------------------------------------------------------ the data


def _events() -> list[dict[str, Any]]:
    rng = random.Random(20240301)
    rows = []
    for day in DAYS:
        for hour in HOURS:
            start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            for _ in range(40):
                name = rng.choice(["page_view", "page_view", "click", "purchase"])
                ts = start + timedelta(seconds=rng.randrange(3600), milliseconds=rng.randrange(1000))
                rows.append({
                    "tenant": rng.choice(["acme", "globex"]), "event": name, "timestamp": ts,
                    "event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "user_id": f"u{rng.randrange(25)}",
                    "page": rng.choice(["/", "/pricing", None]), "country": rng.choice(["DE", "FR", None]),
                    "device": rng.choice(["mobile", "desktop"]),
                    "revenue": round(rng.uniform(1, 100), 2) if name == "purchase" else 0.0,
                    "properties": None, "received_at": ts + timedelta(seconds=2),
                })
    return rows


EVENTS = _events()


def _day(row: dict[str, Any]) -> date:
    return row["timestamp"].date()


def _rollup(rows: Iterable[dict[str, Any]], period: str) -> dict[tuple, dict[str, Any]]:
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        ts = r["timestamp"]
        start = ts.replace(minute=0, second=0, microsecond=0)
        if period == "day":
            start = start.replace(hour=0)
        key = (r["tenant"], r["event"], r["country"], r["device"], r["page"], start)
        acc = out.setdefault(key, {"events": 0, "revenue": 0.0, "users": set()})
        acc["events"] += 1
        acc["revenue"] += r["revenue"]
        acc["users"].add(r["user_id"])
    return out


def _rollup_table(rows: list[dict[str, Any]], period: str, schema: pa.Schema) -> pa.Table:
    records = [{"tenant": k[0], "event": k[1], "country": k[2], "device": k[3], "page": k[4], schema[5].name: k[5],
                "events": v["events"], "revenue": v["revenue"], "user_ids": sorted(v["users"])}
               for k, v in sorted(_rollup(rows, period).items(), key=lambda kv: str(kv[0]))]
    return pa.Table.from_pylist(records, schema=schema)


# ------------------------------------------------------------------------------------ writing a lake


class Lake:
    """Writes files by lake URI through the lake's file system (local or MinIO alike)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fs = lake_filesystem(settings)

    def put(self, uri: str, data: bytes | pa.Table) -> None:
        path = fs_path(uri)
        if not is_s3(uri):
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if isinstance(data, pa.Table):
            pq.write_table(data, path, filesystem=self.fs, compression="zstd")
        else:
            with self.fs.open_output_stream(path) as sink:
                sink.write(data)

    def files(self, uri: str) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(fs_path(uri), recursive=True, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                      and "/_delta_log/" not in i.path)

    def corrupt(self, uri: str) -> None:
        with self.fs.open_output_stream(fs_path(uri)) as sink:
            sink.write(b"not parquet at all")


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA)


def build_lake(settings: Settings) -> Lake:
    lake = Lake(settings)
    for day in DAYS:
        rows = sorted((r for r in EVENTS if _day(r) == day), key=lambda r: (r["tenant"], r["event"], r["timestamp"]))
        if day in IN_ARCHIVE:
            for hour in HOURS:
                hour_rows = [r for r in rows if r["timestamp"].hour == hour]
                at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
                replace_partition(settings, ARCHIVE_TABLE, at, with_partition_columns(_table(hour_rows), ARCHIVE_TABLE,
                                                                                      at), "archive", {"test": True})
        cold = f"{cold_events_path(settings)}/dt={day}"
        if day in COLD_PUBLISHED:
            publish_day(settings, COLD_EVENTS_TABLE, day, _table(rows), EVENTS_SORT, [], {}, None)
        if day in COLD_UNPUBLISHED:  # a move that failed before its commit: half the day, in no version
            lake.put(f"{cold}/part-0.parquet", _table(rows[: len(rows) // 2]))
        if day in WARM_HOURLY_DAYS:
            for hour in HOURS:
                hour_rows = [r for r in rows if r["timestamp"].hour == hour]
                at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
                table = with_partition_columns(_rollup_table(hour_rows, "hour", HOURLY_SCHEMA),
                                               ROLLUPS_HOURLY_TABLE, at)
                replace_partition(settings, ROLLUPS_HOURLY_TABLE, at, table, "recompute", {"test": True})
        if day in COLD_DAILY_DAYS:
            publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, day, _rollup_table(rows, "day", DAILY_SCHEMA),
                        ROLLUP_KEYS, [], {}, None)
    return lake


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("lake-sql-minio")
    settings = Settings(home=home, s3_endpoint=f"http://127.0.0.1:{free_pair()}", lake_uri=f"s3://{BUCKET}/lake",
                        minio_manage=True, kafka_manage=False, redis_manage=False)
    with minio_alone(settings):
        yield settings


def _fresh(base: Settings, kind: str, tmp: Path) -> Settings:
    lake = str(tmp / "lake") if kind == "local" else f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/lake"
    return base.model_copy(update={"home": tmp / "home", "lake_uri": lake})


@pytest.fixture(scope="module", params=["local", "minio"])
def lake(request: pytest.FixtureRequest, minio: Settings, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """One lake per backend for the read-only tests."""
    return build_lake(_fresh(minio, request.param, tmp_path_factory.mktemp(f"lake-{request.param}")))


@pytest.fixture(params=["local", "minio"])
def fresh(request: pytest.FixtureRequest, minio: Settings, tmp_path: Path) -> Settings:
    """An empty lake for a test that changes it."""
    return _fresh(minio, request.param, tmp_path)


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "LAKEHOUSE_HOME": str(settings.home), "LAKEHOUSE_LAKE_URI": settings.effective_lake_uri,
            "LAKEHOUSE_S3_ENDPOINT": settings.s3_endpoint}


# ------------------------------------------------------------------------------------ the views


def _truth_events(rows: Iterable[dict[str, Any]]) -> dict[tuple, tuple]:
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0.0, set()])
    for r in rows:
        a = acc[(_day(r), r["timestamp"].hour, r["tenant"], r["event"])]
        a[0] += 1
        a[1] += r["revenue"]
        a[2].add(r["user_id"])
    return {k: (n, round(rev, 6), len(users)) for k, (n, rev, users) in acc.items()}


def test_views_match_the_ground_truth(lake: Lake) -> None:
    con = lake_connection(lake.settings)
    try:
        rows = con.sql("SELECT dt, hour, tenant, event, count(*), sum(revenue), count(DISTINCT user_id) "
                       "FROM events GROUP BY ALL").fetchall()
        got = {(dt, hour, tenant, event): (n, round(rev, 6), users) for dt, hour, tenant, event, n, rev, users in rows}
        assert got == _truth_events(EVENTS)  # D4 once (cold), D5 once (archive, unpublished cold ignored)
        assert con.sql("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (len(EVENTS),) * 2

        warm = [r for r in EVENTS if _day(r) in WARM_HOURLY_DAYS]
        got_hourly = con.sql("SELECT tenant, hour, sum(events), dt, hour_of_day FROM rollups_hourly GROUP BY ALL")
        sums: dict[tuple, int] = defaultdict(int)
        for r in warm:
            sums[(r["tenant"], r["timestamp"].replace(minute=0, second=0, microsecond=0))] += 1
        assert {(t, h): n for t, h, n, _dt, _hod in got_hourly.fetchall()} == dict(sums)
        mismatched = con.sql("SELECT count(*) FROM rollups_hourly WHERE hour <> (dt + to_hours(hour_of_day))")
        assert mismatched.fetchone() == (0,)
        users_per_tenant = con.sql(
            "SELECT tenant, count(DISTINCT u) FROM rollups_hourly, unnest(user_ids) AS t(u) GROUP BY tenant").fetchall()
        assert dict(users_per_tenant) == {
            t: len({r["user_id"] for r in warm if r["tenant"] == t}) for t in ("acme", "globex")}

        cold = [r for r in EVENTS if _day(r) in COLD_DAILY_DAYS]
        daily = con.sql(
            "SELECT day, tenant, event, sum(events), round(sum(revenue), 6) FROM rollups_daily GROUP BY ALL")
        truth_daily: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
        for r in cold:
            t = truth_daily[(datetime.combine(_day(r), datetime.min.time(), UTC), r["tenant"], r["event"])]
            t[0] += 1
            t[1] += r["revenue"]
        assert {(d, t, e): (n, rev) for d, t, e, n, rev in daily.fetchall()} == {
            k: (n, round(rev, 6)) for k, (n, rev) in truth_daily.items()}
    finally:
        con.close()
    # The one-call helper returns Arrow.
    table = lake_query("SELECT count(*) AS n FROM events WHERE dt = $day", lake.settings, {"day": D6})
    assert isinstance(table, pa.Table) and table.column("n").to_pylist() == [sum(_day(r) == D6 for r in EVENTS)]


def test_date_filters_read_only_their_partitions(lake: Lake) -> None:
    con = lake_connection(lake.settings)
    try:
        figures = {
            "events, dt = D6 (archive, 3 hours)": (files_read(
                con, "SELECT count(*) FROM events WHERE dt = $d", {"d": D6}), 3),
            "events, dt = D6, hour = 7": (files_read(
                con, "SELECT count(*) FROM events WHERE dt = $d AND hour = 7", {"d": D6}), 1),
            "events, dt = D2 (cold)": (files_read(con, "SELECT count(*) FROM events WHERE dt = $d", {"d": D2}), 1),
            "rollups_hourly, dt = D5": (files_read(con, "SELECT sum(events) FROM rollups_hourly WHERE dt = $d",
                                                   {"d": D5}), 3),
            "rollups_daily, dt >= D3": (files_read(con, "SELECT sum(events) FROM rollups_daily WHERE dt >= $d",
                                                   {"d": D3}), 2),
        }
        unfiltered = files_read(con, "SELECT count(*) FROM events")
    finally:
        con.close()
    assert unfiltered >= 3 * 3 + 4  # without a filter: every archive hour and every published cold day
    print(json.dumps({k: v[0] for k, v in figures.items()}, indent=1))
    assert {k: v[0] for k, v in figures.items()} == {k: v[1] for k, v in figures.items()}


def test_filtered_queries_never_open_other_days_files(fresh: Settings) -> None:
    lake = build_lake(fresh)
    # Every data file of every day but D3 (cold) and D6 (archive, warm rollups) becomes garbage, except
    # the first file of each dataset: DuckDB reads that one's footer for the schema when it binds a view.
    for root in (archive_path(fresh), cold_events_path(fresh), rollups_hourly_path(fresh), rollups_daily_path(fresh)):
        files = lake.files(root)
        for path in files[1:]:
            if f"dt={D3}" not in path and f"dt={D6}" not in path:
                lake.corrupt(("s3://" + path) if is_s3(fresh.effective_lake_uri) else path)
    con = lake_connection(fresh)
    try:
        for day in (D3, D6):
            got = con.execute("SELECT count(*), count(DISTINCT user_id) FROM events WHERE dt = $d",
                              {"d": day}).fetchone()
            day_rows = [r for r in EVENTS if _day(r) == day]
            assert got == (len(day_rows), len({r["user_id"] for r in day_rows}))
        assert con.execute("SELECT sum(events) FROM rollups_hourly WHERE dt = $d", {"d": D6}).fetchone() == (
            sum(_day(r) == D6 for r in EVENTS),)
        assert con.execute("SELECT sum(events) FROM rollups_daily WHERE dt = $d", {"d": D3}).fetchone() == (
            sum(_day(r) == D3 for r in EVENTS),)
        for view in ("events", "rollups_hourly", "rollups_daily"):
            with pytest.raises(duckdb.Error):  # the corrupted files are real: reading them fails
                con.sql(f"SELECT count(*) FROM {view}").fetchall()
    finally:
        con.close()
    # The API's path too: a day's warm and cold answers open nothing of the other days.
    reader = LakeRollupReader(fresh)
    try:
        engine = QueryEngine(None, reader)
        for tier, day in (("warm", D6), ("cold", D3)):
            start = datetime.combine(day, datetime.min.time(), UTC)
            spec = _spec(tier, ["events", "unique_users"], start, start + timedelta(days=1), dimensions=["device"])
            assert _keyed(engine.run("acme", spec, NOW).rows, spec) == _truth(spec, "acme")
    finally:
        reader.close()


def test_an_empty_lake_has_empty_views_and_tiers_show_up_later(fresh: Settings) -> None:
    con = lake_connection(fresh)
    try:
        for view in ("events", "rollups_hourly", "rollups_daily"):
            assert con.sql(f"SELECT count(*) FROM {view}").fetchone() == (0,)
    finally:
        con.close()
    reader = LakeRollupReader(fresh, listing_seconds=0)
    engine = QueryEngine(None, reader)
    spec = build_spec(SpecInput(["events", "unique_users"], start=T0, end=T_END, granularity="day", tier="cold"),
                      now=NOW)
    try:
        empty = engine.run("acme", spec, NOW)
        assert empty.rows == [] and empty.columns == ["bucket", "events", "unique_users"]
        total = build_spec(SpecInput(["events"], start=T0, end=T_END, tier="warm"), now=NOW)
        assert engine.run("acme", total, NOW).rows == [[0]]  # a total over nothing is 0, as in the hot tier
        build_lake(fresh)
        assert len(engine.run("acme", spec, NOW).rows) == len(COLD_DAILY_DAYS)  # the reader listed again
    finally:
        reader.close()


# ------------------------------------------------------------------------------------ lakehouse sql


def test_sql_command_one_shot_and_interactive(lake: Lake, tmp_path: Path) -> None:
    per_day = "SELECT dt, count(*) AS n FROM events GROUP BY dt ORDER BY dt"
    truth = [[str(day), str(sum(_day(r) == day for r in EVENTS))] for day in DAYS]
    lakehouse = [sys.executable, "-m", "cli.main", "sql"]
    out = subprocess.run([*lakehouse, per_day, "--format", "csv"], env=_env(lake.settings), cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert list(csv.reader(io.StringIO(out.stdout))) == [["dt", "n"], *truth]

    rollups = ("SELECT 'daily' AS v, sum(events) AS n FROM rollups_daily UNION ALL "
               "SELECT 'hourly', sum(events) FROM rollups_hourly ORDER BY v")
    out = subprocess.run([*lakehouse, rollups, "--format", "csv"], env=_env(lake.settings), cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert list(csv.reader(io.StringIO(out.stdout)))[1:] == [
        ["daily", str(sum(_day(r) in COLD_DAILY_DAYS for r in EVENTS))],
        ["hourly", str(sum(_day(r) in WARM_HOURLY_DAYS for r in EVENTS))]], out.stderr

    table = subprocess.run([*lakehouse, "SELECT count(*) AS n FROM events"], env=_env(lake.settings), cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and f"{len(EVENTS):,}" in table.stdout and "(1 row)" in table.stdout

    session = "SELECT count(*) AS n\nFROM events\nWHERE dt = DATE '2024-03-04';\nSELECT no_such_column FROM events;\n" \
              "SELECT 6 * 7 AS answer;\n.quit\n"
    shell = subprocess.run(lakehouse, input=session, env=_env(lake.settings), cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr
    assert str(sum(_day(r) == D4 for r in EVENTS)) in shell.stdout
    assert "error:" in shell.stdout and "no_such_column" in shell.stdout and "42" in shell.stdout

    bad = subprocess.run([*lakehouse, "SELEC 1"], env=_env(lake.settings), cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "error:" in bad.stderr


def test_sql_command_reads_the_tables_as_of_a_version_and_exits_cleanly(fresh: Settings) -> None:
    """Time travel from the command line: after a restatement of one hour, ``--as-of`` the previous version
    gives the previous numbers, the newest version the new ones, and the exit codes stay trustworthy (0, 1)."""
    build_lake(fresh)
    day = max(IN_ARCHIVE)  # read from the archive (D4 is also cold, read from there)
    at = datetime(day.year, day.month, day.day, HOURS[0], tzinfo=UTC)
    before = sum(_day(r) == day and r["timestamp"].hour == at.hour for r in EVENTS)
    kept = [r for r in EVENTS if _day(r) == day and r["timestamp"].hour == at.hour][: before // 2]
    previous = open_table(fresh, ARCHIVE_TABLE).version()
    replace_partition(fresh, ARCHIVE_TABLE, at, with_partition_columns(_table(kept), ARCHIVE_TABLE, at), "archive",
                      {"test": "restatement"})
    query = f"SELECT count(*) AS n FROM events WHERE dt = DATE '{day}' AND hour = {at.hour}"
    lakehouse = [sys.executable, "-m", "cli.main", "sql", query, "--format", "csv"]
    for as_of, expected in (([], len(kept)), (["--as-of", str(previous)], before)):
        out = subprocess.run([*lakehouse, *as_of], env=_env(fresh), cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert list(csv.reader(io.StringIO(out.stdout))) == [["n"], [str(expected)]], as_of
    missing = subprocess.run([*lakehouse, "--as-of", "9999"], env=_env(fresh), cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 1 and "as of 9999" in missing.stderr


def test_sql_command_writes_parquet_and_csv_files(lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _env(lake.settings).items():
        if key.startswith("LAKEHOUSE_"):
            monkeypatch.setenv(key, value)
    query = "SELECT event_id, user_id, revenue FROM events WHERE dt BETWEEN DATE '2024-03-03' AND DATE '2024-03-05'"
    expected = sorted(r["event_id"] for r in EVENTS if D3 <= _day(r) <= D5)
    assert cli_main(["sql", query, "--format", "parquet", "--output", str(tmp_path / "out.parquet")]) == 0
    assert sorted(pq.read_table(tmp_path / "out.parquet").column("event_id").to_pylist()) == expected
    assert cli_main(["sql", query, "--format", "csv", "--output", str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv") as f:
        assert sorted(r["event_id"] for r in csv.DictReader(f)) == expected
    assert cli_main(["sql", query, "--format", "parquet"]) == 2  # parquet needs a file


# ------------------------------------------------------------------- the API's warm/cold query path


def _truth(spec: QuerySpec, tenant: str) -> dict[tuple, tuple]:
    """The engine's answer computed straight from the event list (not from the files): (bucket, dims) -> metrics."""
    daily = spec.tier == "cold"
    covered, step = (COLD_DAILY_DAYS, 86400) if daily else (WARM_HOURLY_DAYS, 3600)
    start = datetime.fromtimestamp(int(spec.start.timestamp()) // step * step, UTC)  # a forced tier's whole rows
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in EVENTS:
        if r["tenant"] != tenant or _day(r) not in covered:
            continue
        period = r["timestamp"].replace(minute=0, second=0, microsecond=0)
        if daily:
            period = period.replace(hour=0)
        if not start <= period < spec.end:
            continue
        dims = {d: r[d] or "" for d in ("event", "country", "device", "page")}  # missing reads as '', as hot
        if not all(_holds(dims[f.field], f.op, f.values) for f in spec.filters if not f.on_metric):
            continue
        bucket = []
        if spec.granularity:
            seconds = {"hour": 3600, "day": 86400}[spec.granularity]
            bucket = [int(period.timestamp()) // seconds * seconds]
        groups[(*bucket, *(dims[d] for d in spec.dimensions))].append(r)
    if not spec.granularity and not spec.dimensions:
        groups.setdefault((), [])
    out = {}
    for key, rows in groups.items():
        values = {}
        for name in spec.metrics:
            metric = METRICS[name]
            chosen = [r for r in rows if metric.event is None or r["event"] == metric.event]
            values[name] = (len(chosen) if metric.measure == "events" else
                            round(sum(r["revenue"] for r in chosen), 6) if metric.measure == "revenue" else
                            len({r["user_id"] for r in chosen}))
        if all(_holds(values[f.field], f.op, f.values) for f in spec.filters if f.on_metric):
            out[key] = tuple(values[m] for m in spec.metrics)
    return out


def _holds(value: Any, op: str, bounds: tuple[Any, ...]) -> bool:
    return {"=": lambda: value == bounds[0], "!=": lambda: value != bounds[0], "in": lambda: value in bounds,
            "not in": lambda: value not in bounds, ">=": lambda: value >= bounds[0], ">": lambda: value > bounds[0],
            "<": lambda: value < bounds[0], "<=": lambda: value <= bounds[0],
            "between": lambda: bounds[0] <= value <= bounds[1]}[op]()


def _keyed(rows: list[list[Any]], spec: QuerySpec) -> dict[tuple, tuple]:
    keys = (1 if spec.granularity else 0) + len(spec.dimensions)
    return {tuple(row[:keys]): tuple(round(v, 6) if isinstance(v, float) else v for v in row[keys:]) for row in rows}


T0, T_END, NOW = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 7, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC)


def _spec(tier: str, metrics: list[str], start: datetime = T0, end: datetime = T_END, **more: Any) -> QuerySpec:
    return build_spec(SpecInput(metrics, start=start, end=end, tier=tier, **more), now=NOW)


CASES = [  # (id, tenant, spec)
    ("warm-hourly-events", "acme", _spec("warm", ["events"], granularity="hour")),
    ("warm-daily-users-by-country-mobile", "acme",
     _spec("warm", ["unique_users", "events"], granularity="day", dimensions=["country"],
           filters=[{"field": "device", "op": "=", "value": "mobile"}])),
    ("warm-mid-hour-start-revenue-by-device-page", "globex",
     _spec("warm", ["revenue", "purchases"], datetime(2024, 3, 4, 7, 30, tzinfo=UTC), granularity="hour",
           dimensions=["device", "page"], filters=[{"field": "country", "op": "in", "values": ["DE", ""]}])),
    ("cold-daily-events-by-event-not-home", "acme",
     _spec("cold", ["events"], granularity="day", dimensions=["event"],
           filters=[{"field": "page", "op": "!=", "value": "/"}])),
    ("cold-total-users", "globex", _spec("cold", ["unique_users"])),
    ("cold-revenue-by-country", "globex",
     _spec("cold", ["revenue"], datetime(2024, 3, 2, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC),
           granularity="day", dimensions=["country"])),
    ("cold-months-without-files", "acme",
     _spec("cold", ["clicks"], datetime(2024, 1, 20, tzinfo=UTC), datetime(2024, 3, 3, tzinfo=UTC),
           granularity="day", dimensions=["device"])),
    ("warm-one-wide-glob", "globex",
     _spec("warm", ["unique_users"], datetime(2023, 10, 1, tzinfo=UTC), granularity="day", dimensions=["event"],
           filters=[{"field": "page", "op": "in", "values": ["/", "/pricing"]}])),
    ("cold-page-views-not-in-country", "acme",
     _spec("cold", ["page_views"], dimensions=["country"],
           filters=[{"field": "country", "op": "not in", "values": ["DE"]}])),
]
TOP_PAGES = _spec("warm", ["events", "revenue"], dimensions=["page"],
                  filters=[{"field": "events", "op": ">=", "value": 5}], order_by=[{"field": "events"}], limit=2)


@dataclass
class _Engine:
    engine: QueryEngine
    reader: LakeRollupReader
    settings: Settings


@pytest.fixture(scope="module")
def engine(lake: Lake) -> Iterator[_Engine]:
    reader = LakeRollupReader(lake.settings)
    try:
        yield _Engine(QueryEngine(None, reader), reader, lake.settings)
    finally:
        reader.close()


@pytest.mark.parametrize(("tenant", "spec"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_warm_and_cold_answers_match_the_ground_truth(engine: _Engine, tenant: str, spec: QuerySpec) -> None:
    truth = _truth(spec, tenant)
    assert any(any(v) for v in truth.values()), "the spec selects nothing: a useless test"
    result = engine.engine.run(tenant, spec, NOW)
    assert result.sources == [f"{spec.tier}:{'rollups_daily' if spec.tier == 'cold' else 'rollups_hourly'}"]
    assert _keyed(result.rows, spec) == truth


def test_top_n_runs_having_order_and_limit_in_duckdb(engine: _Engine) -> None:
    truth = sorted(_truth(TOP_PAGES, "acme").items(), key=lambda kv: (-kv[1][0], kv[0]))[:2]
    assert len(truth) == 2 and all(values[0] >= 5 for _key, values in truth)
    assert [(tuple(row[:1]), (row[1], round(row[2], 6))) for row in engine.engine.run("acme", TOP_PAGES, NOW).rows] \
        == truth


def test_lake_path_is_thread_safe_prunes_and_keeps_values_out_of_sql(engine: _Engine) -> None:
    specs = [(tenant, spec) for _id, tenant, spec in CASES] + [("acme", TOP_PAGES)]

    def answer(tenant_spec: tuple[str, QuerySpec]) -> list[list[Any]]:  # sums of doubles vary in the last bits
        rows = engine.engine.run(tenant_spec[0], tenant_spec[1], NOW).rows
        return [[round(v, 6) if isinstance(v, float) else v for v in row] for row in rows]

    expected = [answer(ts) for ts in specs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(answer, specs * 4))
    assert all(rows == expected[i % len(specs)] for i, rows in enumerate(results))

    # One day of hourly rollups: the reader hands over that day's files only (from the table's log, nothing
    # listed), DuckDB opens its three hour files of nine.
    one_day = _spec("warm", ["events"], datetime(2024, 3, 5, tzinfo=UTC), datetime(2024, 3, 6, tzinfo=UTC),
                    granularity="hour", dimensions=["country"])
    (segment,) = plan(one_day, NOW, Horizons())
    relation = engine.reader.relation("rollups_hourly", segment.start, segment.end)
    assert relation[0] == "lake_rollups_hourly($lake_files)"
    files = relation[1]["lake_files"]
    assert len(files) == 3 and all("/dt=2024-03-05/hour_of_day=" in f for f in files)
    sql, params = compile_segment(one_day, segment, "acme", whole=True, relation=relation)
    assert "Total Files Read: 3" in engine.reader.explain(sql, params)

    crafted = "acme' OR 1=1 --"
    hostile = _spec("warm", ["events"], granularity="hour", filters=[
        {"field": "country", "op": "=", "value": "x' OR '1'='1"}])
    assert engine.engine.run(crafted, hostile, NOW).rows == []
    sql, params = compile_segment(hostile, plan(hostile, NOW, Horizons())[0], crafted, whole=True,
                                  relation=engine.reader.relation("rollups_hourly", T0, T_END))
    assert crafted not in sql and "x' OR" not in sql and params["tenant"] == crafted
