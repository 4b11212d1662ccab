"""The compliance audit on real services: a MinIO lake and the hot tier behind a real hot node.

The test writes every tier itself in the agreed layout — raw events and rollups into the hot tier
through the hot node (Arrow Flight into chDB), archive hours, warm hourly rollups and cold days committed to
their Delta tables, the cold days' files tagged cold on MinIO, audit-log records and a legal hold through the real
audit log — keeping its own bookkeeping of what it wrote (partitions, rows, bytes of each object,
event-time range). The audit must report exactly that inventory and exactly the violations planted:

* events: hour H-30 only in hot (no warm copy); hour H-4's warm copy short of 2 rows; hours H-29..H-7
  in no tier (a gap between the archive and the newer hours); the cold day C younger than the warm
  horizon and no longer in warm (moved early);
* rollups_hourly: hours H-30 and H-4 in hot without a warm copy;
* rollups_daily: a day 2,600 days old (past the 7-year retention), a day 2,599 days old under a legal
  hold (kept, not a violation), a day 400 days old without the cold tag, and a day the audit log says
  was compacted into cold that no tier holds (a gap by the audit log).

Then an audit record is altered on MinIO: ``audit verify`` and the report must say so. Only MinIO and
the API/hot node are started (own home, free ports), not Kafka or the stream job. A last test builds cold
days with the tier movers' own writer (``storage_tiers.tiers.cold_files``) to check the inventory reads them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest

from cli.main import main as lakehouse
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import FlightHotStore
from common.lake import fs_path, is_s3, lake_filesystem
from common.lake_io import publish
from common.lake_tables import (
    ARCHIVE_TABLE,
    COLD_EVENTS_TABLE,
    COLD_ROLLUPS_DAILY_TABLE,
    ROLLUPS_HOURLY_SCHEMA,
    ROLLUPS_HOURLY_TABLE,
    replace_partition,
    with_partition_columns,
)
from common.rollups import ROLLUP_SCHEMA
from common.settings import Settings
from stack import ensure_bucket, s3_client
from stack.app_services import full_stack
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.audit_report import publish_report, report_html, report_json, run_audit
from storage_tiers.compliance.holds import place_hold
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import day_files, publish_day, published, table_hours
from tests.integration.own_services import free_pair

pytestmark = pytest.mark.integration

BUCKET = "audit-lake"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
COLD_TAGS = {"lakehouse-tier": "cold"}


@dataclass
class Truth:
    """What the test wrote, per (dataset, tier): partition start → [rows, bytes, min time, max time]."""

    parts: dict[tuple[str, str], dict[datetime, list]] = field(default_factory=dict)

    def add(self, dataset: str, tier: str, start: datetime, rows: int, size: int, low: datetime | None,
            high: datetime | None) -> None:
        self.parts.setdefault((dataset, tier), {})[start] = [rows, size, low, high]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """MinIO and the API/hot node under their own home and free ports (child processes read the environment)."""
    home = tmp_path_factory.mktemp("audit-home")
    minio, api, flight, unused = free_pair(), free_pair(), free_pair(), free_pair()
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_LAKE_URI": f"s3://{BUCKET}/lake",
        "LAKEHOUSE_S3_ENDPOINT": f"http://127.0.0.1:{minio}",
        "LAKEHOUSE_API_PORT": str(api),
        "LAKEHOUSE_HOT_NODE_URL": f"grpc://127.0.0.1:{flight}",
        "LAKEHOUSE_KAFKA_BOOTSTRAP": f"localhost:{unused}",  # never used: no Kafka in this test
        "LAKEHOUSE_REDIS_URL": f"redis://127.0.0.1:{unused + 1}/0",  # the API answers uncached without Redis
        "LAKEHOUSE_TIER_POLICY": "",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings = Settings()
    stack = full_stack(settings)
    try:
        stack.up(["minio", "api"])
        ensure_bucket(settings, progress=print)
        yield settings
    finally:
        stack.down(["api", "minio"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _events(start: datetime, n: int, tenant: str = "acme", step: timedelta = timedelta(minutes=1)) -> pa.Table:
    times = [start + i * step for i in range(n)]
    return pa.Table.from_pylist([
        {"tenant": tenant, "event": "page_view", "timestamp": t, "event_id": uuid.uuid4().hex, "user_id": f"u{i}",
         "page": "/", "country": "DE", "device": "mobile", "revenue": 0.0, "properties": "{}", "received_at": t}
        for i, t in enumerate(times)], schema=EVENT_ARROW_SCHEMA)


def _put(settings: Settings, uri_path: str, body: bytes, tags: dict[str, str] | None = None) -> int:
    publish(lake_filesystem(settings), uri_path, body)
    if tags:
        bucket, key = uri_path.split("/", 1)
        s3_client(settings).put_object_tagging(
            Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
    return len(body)


def _lake(settings: Settings, *parts: str) -> str:
    return "/".join([fs_path(settings.effective_lake_uri), *parts])


def _archive_hour(settings: Settings, truth: Truth, hour: datetime, rows: int) -> None:
    """One hour committed to the archive's Delta table (empty hours too, as the archive commits them)."""
    table = _events(hour + timedelta(minutes=2), rows)
    low, high = (table["timestamp"][0].as_py(), table["timestamp"][-1].as_py()) if rows else (None, None)
    replace_partition(settings, ARCHIVE_TABLE, hour, with_partition_columns(table, ARCHIVE_TABLE, hour), "archive",
                      {"rows": rows, "checksum": "sha256:test"})
    size = table_hours(settings, ARCHIVE_TABLE, hour.date()).get(hour, {"bytes": 0})["bytes"]
    truth.add("events", "warm", hour, rows, size, low, high)


def _warm_rollups(settings: Settings, truth: Truth, hour: datetime, rows: int, events: int = 1) -> None:
    table = pa.table({"tenant": ["acme"] * rows, "event": ["page_view"] * rows, "country": ["DE"] * rows,
                      "device": ["mobile"] * rows, "page": [f"/p{i}" for i in range(rows)],
                      "hour": pa.array([hour] * rows, pa.timestamp("us", tz="UTC")),
                      "events": pa.array([events] * rows, pa.int64()), "revenue": [0.0] * rows,
                      "user_ids": [["u"]] * rows}).cast(ROLLUPS_HOURLY_SCHEMA)
    replace_partition(settings, ROLLUPS_HOURLY_TABLE, hour, with_partition_columns(table, ROLLUPS_HOURLY_TABLE, hour),
                      "recompute", {"rows": rows})
    size = table_hours(settings, ROLLUPS_HOURLY_TABLE, hour.date())[hour]["bytes"]
    truth.add("rollups_hourly", "warm", hour, rows, size, hour, hour)


def _cold_day(settings: Settings, truth: Truth, dataset: str, day: datetime, table: pa.Table, time_column: str,
              tagged: bool = True) -> None:
    """One day committed to its cold Delta table (as the tier mover commits it), its files tagged cold or not."""
    delta_table = COLD_EVENTS_TABLE if dataset == "events" else COLD_ROLLUPS_DAILY_TABLE
    publish_day(settings, delta_table, day.date(), table, ["tenant"], [], {}, None)
    if tagged and is_s3(settings.effective_lake_uri):
        for uri in day_files(settings, delta_table, day.date()):
            bucket, key = uri.removeprefix("s3://").split("/", 1)
            s3_client(settings).put_object_tagging(
                Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in COLD_TAGS.items()]})
    size = (published(settings, delta_table, day.date()) or {})["bytes"]
    times = table[time_column].to_pylist()
    truth.add(dataset if dataset == "events" else "rollups_daily", "cold", day, table.num_rows, size, min(times),
              max(times))


def _daily_rollups(day: datetime, tenant: str, rows: int) -> pa.Table:
    return pa.table({"tenant": [tenant] * rows, "event": ["page_view"] * rows, "country": ["DE"] * rows,
                     "device": ["mobile"] * rows, "page": [f"/p{i}" for i in range(rows)],
                     "day": pa.array([day] * rows, pa.timestamp("us", tz="UTC")),
                     "events": pa.array([2] * rows, pa.int64()), "revenue": [0.0] * rows, "user_ids": [["u"]] * rows})


def _hot(hot: FlightHotStore, truth: Truth, hour: datetime, rows: int, rollup_rows: int) -> None:
    table = _events(hour + timedelta(minutes=1), rows, step=timedelta(minutes=3))
    hot.insert_arrow("events_raw", table, token=f"audit-test-{hour:%Y%m%d%H}")
    truth.add("events", "hot", hour, rows, 0, table["timestamp"][0].as_py(), table["timestamp"][-1].as_py())
    minutes = [hour + timedelta(minutes=i) for i in range(rollup_rows)]  # distinct keys: merges change nothing
    rollups = pa.table({"tenant": ["acme"] * rollup_rows, "event": ["page_view"] * rollup_rows, "minute": minutes,
                        "country": ["DE"] * rollup_rows, "device": ["mobile"] * rollup_rows,
                        "page": [f"/p{i}" for i in range(rollup_rows)], "events": [1] * rollup_rows,
                        "revenue": [0.0] * rollup_rows, "user_ids": [["u1"]] * rollup_rows}).cast(ROLLUP_SCHEMA)
    hot.insert_arrow("rollups_1m_ingest", rollups, token=f"audit-test-rollups-{hour:%Y%m%d%H}")
    truth.add("rollups_1m", "hot", hour, rollup_rows, 0, minutes[0], minutes[-1])
    truth.add("rollups_hourly", "hot", hour, rollup_rows, 0, hour, hour)


@dataclass
class World:
    settings: Settings
    truth: Truth
    now: datetime
    H: datetime  # the current hour
    cold_day: datetime
    days: dict[str, datetime]


@pytest.fixture(scope="module")
def world(services: Settings) -> World:
    settings = services
    H = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    truth = Truth()
    hot = FlightHotStore.for_settings(settings)
    try:
        for hours_ago, rows, rollup_rows in [(30, 7, 2), (6, 11, 3), (5, 13, 4), (4, 5, 5)]:
            _hot(hot, truth, H - hours_ago * HOUR, rows, rollup_rows)
    finally:
        hot.close()
    cold_day = (H - 72 * HOUR).replace(hour=0)
    _cold_day(settings, truth, "events", cold_day, _events(cold_day, 30, step=timedelta(minutes=47)), "timestamp")
    hour, i = cold_day + DAY, 0
    while hour <= H - 31 * HOUR:  # the archive continues right after the cold day, every hour, some empty
        _archive_hour(settings, truth, hour, 0 if i % 5 == 0 else 3 + i % 4)
        hour, i = hour + HOUR, i + 1
    for hours_ago, rows in [(6, 11), (5, 13), (4, 3)]:  # H-4: two rows short of the hot tier's 5
        _archive_hour(settings, truth, H - hours_ago * HOUR, rows)
    for hours_ago, rows in [(6, 3), (5, 4)]:
        _warm_rollups(settings, truth, H - hours_ago * HOUR, rows)
    today = H.replace(hour=0)
    days = {"past": today - 2600 * DAY, "held": today - 2599 * DAY, "untagged": today - 400 * DAY,
            "lost": today - 402 * DAY, "purged": today - 2601 * DAY}
    _cold_day(settings, truth, "rollups_daily", days["past"], _daily_rollups(days["past"], "beta", 4), "day")
    _cold_day(settings, truth, "rollups_daily", days["held"], _daily_rollups(days["held"], "acme", 6), "day")
    _cold_day(settings, truth, "rollups_daily", days["untagged"], _daily_rollups(days["untagged"], "acme", 2), "day",
              tagged=False)
    log = AuditLog(settings)
    log.append("compact_cold", "rollups_daily", partition=f"dt={days['lost']:%Y-%m-%d}", tier_from="warm",
               tier_to="cold", rows=9, run_id="run-1", reason="past the warm horizon")
    log.append("purge", "rollups_daily", partition=f"dt={days['purged']:%Y-%m-%d}", tier_from="cold", rows=5,
               run_id="run-2", reason="past retention (2557 days)")
    place_hold(log, "acme", f"{days['held']:%Y-%m-%d}", f"{days['held']:%Y-%m-%d}", "case 2026-17", "legal")
    # the audit is judged as of now, after the log records were written (it reads the log up to as_of)
    return World(settings, truth, datetime.now(UTC), H, cold_day, days)


def _report(world: World):
    hot = FlightHotStore.for_settings(world.settings)
    try:
        return run_audit(world.settings, hot, policy=load_policy(world.settings), as_of=world.now)
    finally:
        hot.close()


def test_inventory_matches_what_was_written(world: World) -> None:
    report = _report(world)
    for (dataset, tier), expected in world.truth.parts.items():
        inv = report.inventory.get(dataset, tier)
        assert inv is not None and inv.error is None, (dataset, tier)
        got = {p.start: p for p in inv.partitions}
        assert sorted(got) == sorted(expected), (dataset, tier)
        for start, (rows, size, low, high) in expected.items():
            part = got[start]
            assert part.rows == rows, (dataset, tier, start)
            if tier == "hot":
                assert part.bytes > 0  # system.parts' own figure: there is no independent truth of ClickHouse's bytes
            else:
                assert part.bytes == size, (dataset, tier, start)
            if dataset in ("events", "rollups_1m"):
                assert (part.min_event_time, part.max_event_time) == (low, high), (dataset, tier, start)
        assert inv.rows == sum(v[0] for v in expected.values())
    assert report.inventory.get("events", "warm").partitions[0].start == world.cold_day + DAY
    assert report.log.ok and report.log.records == 3


def test_the_planted_violations_and_nothing_else(world: World) -> None:
    report = _report(world)
    H, d = world.H, world.days
    found = {(v.kind, v.code, v.dataset, v.tier, v.start, v.end, v.partitions) for v in report.findings.violations}
    assert found == {
        ("hot_without_warm", "missing", "events", "hot", H - 30 * HOUR, H - 29 * HOUR, 1),
        ("hot_without_warm", "incomplete", "events", "hot", H - 4 * HOUR, H - 3 * HOUR, 1),
        ("hot_without_warm", "missing", "rollups_hourly", "hot", H - 30 * HOUR, H - 29 * HOUR, 1),
        ("hot_without_warm", "missing", "rollups_hourly", "hot", H - 4 * HOUR, H - 3 * HOUR, 1),
        ("gap", "coverage", "events", None, H - 29 * HOUR, H - 6 * HOUR, 23),
        ("gap", "audit_log", "rollups_daily", None, d["lost"], d["lost"] + DAY, 1),
        ("wrong_tier", "moved_early", "events", "cold", world.cold_day, world.cold_day + DAY, 1),
        ("wrong_tier", "unmarked", "rollups_daily", "cold", d["untagged"], d["untagged"] + DAY, 1),
        ("past_retention", "retention_2557d", "rollups_daily", "cold", d["past"], d["past"] + DAY, 1),
    }
    assert report.findings.counts() == {"past_retention": 1, "gap": 24, "wrong_tier": 2, "hot_without_warm": 4,
                                        "purged_but_present": 0, "inventory_incomplete": 0, "audit_log_altered": 0}
    [held] = report.findings.held
    assert (held.dataset, held.start, held.rows) == ("rollups_daily", d["held"], 6)
    assert [h["tenant"] for h in report.log.active_holds] == ["acme"] and held.holds == (
        report.log.active_holds[0]["hold_id"],)


def test_json_html_and_the_published_report(world: World) -> None:
    report = _report(world)
    document = json.loads(json.dumps(report_json(report), default=str))
    assert document["format"] == "lakehouse.audit.report/1" and document["compliant"] is False
    rows = {(i["dataset"], i["tier"]): i for i in document["inventory"]}
    assert rows[("events", "warm")]["rows"] == sum(v[0] for v in world.truth.parts[("events", "warm")].values())
    assert rows[("rollups_daily", "cold")]["partitions"] == 3
    assert document["violations"]["counts"]["gap"] == 24
    assert [e["action"] for e in document["audit_log"]["entries"]] == ["compact_cold", "purge", "hold_placed"]

    page = report_html(report)
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.open_tags == [] and parser.svgs == 2  # well-formed; both timelines
    assert any(t.startswith("events hot: ") for t in parser.titles)
    assert any(t.startswith("rollups_daily cold: ") for t in parser.titles)
    assert any(t.startswith("gap (coverage)") for t in parser.titles)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "NOT COMPLIANT" in page and "case 2026-17" in page

    written = publish_report(world.settings, report)
    fs = lake_filesystem(world.settings)
    with fs.open_input_stream(fs_path(written["latest.json"])) as stream:
        assert json.loads(stream.read())["violations"]["counts"]["past_retention"] == 1


def test_dagster_report_asset_and_compliance_check(world: World) -> None:
    import dagster as dg

    from orchestration.audit.compliance import compliance_audit_report, retention_compliance
    from orchestration.resources import lakehouse_resources
    from orchestration.tiers.resources import tiers_resources

    resources = {**lakehouse_resources(world.settings), **tiers_resources(world.settings, as_of=world.now.isoformat())}
    result = dg.materialize([compliance_audit_report, retention_compliance], resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success  # a failed check (not blocking) does not fail the run; it is an ERROR on the check
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "retention_compliance" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    counts = {k.removeprefix("violations_"): v.value for k, v in check.metadata.items() if k.startswith("violations_")}
    assert counts == {"past_retention": 1, "gap": 24, "wrong_tier": 2, "hot_without_warm": 4, "purged_but_present": 0,
                      "inventory_incomplete": 0, "audit_log_altered": 0, "total": 31}
    assert check.metadata["audit_log_verified"].value is True
    [materialization] = result.asset_materializations_for_node("compliance_audit_report")
    html_uri = materialization.metadata["report_html"].value
    assert html_uri == f"s3://{BUCKET}/lake/audit/reports/latest.html"
    with lake_filesystem(world.settings).open_input_stream(fs_path(html_uri)) as stream:
        assert b"<svg" in stream.read()


def test_cli_report_and_verify_then_tampering_is_caught(world: World, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert lakehouse(["audit", "--format", "json", "--output", str(out)]) == 1  # violations → exit 1
    assert json.loads(out.read_text())["violations"]["counts"]["hot_without_warm"] == 4
    html_out = tmp_path / "report.html"
    assert lakehouse(["audit", "report", "--format", "html", "--output", str(html_out)]) == 1
    assert html_out.read_text().startswith("<!DOCTYPE html>")
    table_out = tmp_path / "report.txt"
    assert lakehouse(["audit", "--output", str(table_out)]) == 1
    text = table_out.read_text()
    assert text.index("Inventory") < text.index("rollups_daily") < text.index("NOT COMPLIANT")
    assert lakehouse(["audit", "verify"]) == 0
    # judged as of 3 years ago, the 2,600-day-old day is not yet past retention; the log is read up to then (empty)
    as_of = (world.now - 3 * 365 * DAY).date().isoformat()
    assert lakehouse(["audit", "--format", "json", "--output", str(out), "--as-of", as_of]) == 1
    earlier = json.loads(out.read_text())
    assert earlier["violations"]["counts"]["past_retention"] == 0 and earlier["audit_log"]["entries"] == []

    # alter the first record's reason in place: the hash no longer matches
    log_folder = _lake(world.settings, "audit", "log")
    fs = lake_filesystem(world.settings)
    with fs.open_input_stream(f"{log_folder}/000000000001.json") as stream:
        record = json.loads(stream.read())
    record["reason"] = "nothing to see here"
    publish(fs, f"{log_folder}/000000000001.json", json.dumps(record).encode())
    assert lakehouse(["audit", "verify"]) == 1
    report = _report(world)
    assert not report.log.ok and report.findings.counts()["audit_log_altered"] >= 1
    assert any("000000000001" in v.detail for v in report.findings.violations if v.kind == "audit_log_altered")


def test_an_unreachable_hot_tier_is_reported_not_hidden(world: World) -> None:
    report = run_audit(world.settings, None, as_of=world.now, hot_error="the hot node is not reachable (test)")
    incomplete = [v for v in report.findings.violations if v.kind == "inventory_incomplete"]
    assert {v.dataset for v in incomplete} == {"events", "rollups_1m", "rollups_hourly"}
    assert all("not reachable" in v.detail for v in incomplete)


class _Page(HTMLParser):
    """Checks that tags nest properly and collects the SVG <title> tooltips."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "line", "rect"}

    def __init__(self) -> None:
        super().__init__()
        self.open_tags: list[str] = []
        self.svgs = 0
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "svg":
            self.svgs += 1
        if tag not in self.VOID:
            self.open_tags.append(tag)
        self._in_title = tag == "title" and "svg" in self.open_tags

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.open_tags and self.open_tags[-1] == tag, f"</{tag}> closes <{self.open_tags[-1:]}>"
        self.open_tags.pop()
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)


def test_inventory_reads_the_cold_days_the_movers_publish(tmp_path: Path) -> None:
    """The cold days as ``storage_tiers.tiers.cold_files`` really commits them are inventoried right from the cold
    tables' logs: rows, bytes of the live files, time and tenant ranges from the per-file statistics. Local lake,
    no services."""
    from storage_tiers.tiers.cold_files import build_cold_events, build_rollups_daily

    settings = Settings(home=tmp_path, lake_uri=str(tmp_path / "lake"), tier_policy="")
    policy = load_policy(settings)
    truth = Truth()
    day = datetime(2025, 6, 1, tzinfo=UTC)
    for h, rows in [(0, 4), (7, 9), (23, 2)]:
        _archive_hour(settings, truth, day + h * HOUR, rows)
        _warm_rollups(settings, truth, day + h * HOUR, 1, events=rows)  # the builder checks counts vs the archive
    fs = lake_filesystem(settings)
    events = build_cold_events(settings, fs, policy, day.date())
    daily = build_rollups_daily(settings, fs, policy, day.date())
    assert events is not None and daily is not None
    report = run_audit(settings, None, policy=policy, as_of=day + 30 * DAY, hot_error="not needed")
    [cold] = report.inventory.get("events", "cold").partitions
    warm = truth.parts[("events", "warm")]
    assert (cold.start, cold.rows, cold.bytes, cold.files) == (day, 15, events.bytes, 1)
    assert cold.min_event_time == min(v[2] for v in warm.values())
    assert cold.max_event_time == max(v[3] for v in warm.values())
    assert cold.tenant_ranges == (("acme", "acme"),) and cold.notes == ()
    [rolled] = report.inventory.get("rollups_daily", "cold").partitions
    assert (rolled.start, rolled.rows, rolled.bytes) == (day, daily.rows, daily.bytes)
    assert rolled.min_event_time == day  # the `day` column's statistics
