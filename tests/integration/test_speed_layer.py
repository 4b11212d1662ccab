"""The speed layer end to end on real services, checked against the generator's own ground truth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow.parquet as pq
import pytest

from common.hot_store import ClickHouseHotStore, HotStore, HotStoreError
from common.lake import committed_files, landing_path
from common.settings import Settings
from demo.clickstream import Clickstream
from demo.ground_truth import per_minute, totals_by, unique_valid
from demo.load import post_events
from stack.process import read_pid
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.hot_truth import (
    assert_minutes_match,
    hot_minutes,
    hot_watermark,
    late_rows_total,
    stream_caught_up,
)

pytestmark = pytest.mark.integration


def hot_count(hot: HotStore, tenant: str) -> int:
    sql = "SELECT count() AS n FROM events_raw WHERE tenant = {t:String}"
    return hot.query_arrow(sql, {"t": tenant}).to_pylist()[0]["n"]


def landed_rows(settings: Settings, tenant: str) -> list[dict]:
    rows = []
    for path in committed_files(landing_path(settings)):
        table = pq.read_table(path, columns=["tenant", "event_id"])
        rows.extend(r for r in table.to_pylist() if r["tenant"] == tenant)
    return rows


def test_rollups_equal_the_ground_truth_and_late_events_are_counted_and_landed(
    stack: Stack, api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    stream = Clickstream(seed=11, tenants=(tenant,), users_per_tenant=800)
    now = datetime.now(UTC)
    sent = stream.batch(6000, now, disorder_s=240, duplicate_rate=0.03, malformed_rate=0.01)
    result = post_events(api, [e.body for e in sent])
    assert result.rejected == sum(e.kind == "malformed" for e in sent)
    truth = unique_valid(sent)
    wait_for(lambda: hot_count(hot, tenant) >= len(truth), 120, "the valid events in the hot tier")

    # Events 15 minutes past the watermark: dropped from the hot tier, counted as late, kept in the lake. Sent once a
    # batch has recorded that watermark (hot_watermark: the stream's first batches drop nothing as late).
    late_before = late_rows_total(hot)
    late = stream.late_batch(40, datetime.now(UTC), timedelta(minutes=settings.stream_watermark_minutes + 15))
    newest_late = max(datetime.fromisoformat(e.body["timestamp"]) for e in late)
    wait_for(lambda: (hot_watermark(hot) or newest_late) > newest_late, 60, "the watermark to pass the late events")
    post_events(api, [e.body for e in late])
    wait_for(lambda: late_rows_total(hot) - late_before >= len(late), 60, "the late events to be counted")
    landed_expected = sum(e.kind in ("valid", "duplicate", "late") for e in sent + late)
    wait_for(lambda: len(landed_rows(settings, tenant)) >= landed_expected, 60, "the landing files")

    assert hot_count(hot, tenant) == len(truth)
    assert_minutes_match(hot_minutes(hot, tenant), per_minute(truth, tenant))
    assert len(landed_rows(settings, tenant)) == landed_expected

    # The same numbers through the query API, grouped and filtered.
    body = api.get("/v1/timeseries", params={"metric": "page_views", "tenant": tenant, "range": "1h",
                                             "group_by": "country", "filter": "device:mobile"}).json()
    by_country = {s["group"]["country"]: sum(p[1] for p in s["points"]) for s in body["series"]}
    mobile = [e for e in truth if e["device"] == "mobile"]
    assert by_country == totals_by(mobile, tenant, "country", event="page_view")
    users = api.post("/v1/query", params={"tenant": tenant}, json={"metrics": ["unique_users"], "range": "1h"}).json()
    got_users = users["rows"][0][0]
    true_users = len({e["user_id"] for e in truth})
    assert abs(got_users - true_users) <= 0.02 * true_users


def test_exactly_once_when_the_stream_job_is_killed_mid_run(
    stack: Stack, api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    stream = Clickstream(seed=12, tenants=(tenant,), users_per_tenant=2000)
    sent = stream.batch(12000, datetime.now(UTC), disorder_s=120, duplicate_rate=0.02, malformed_rate=0.0)
    # Requests of 100 events, each one Kafka record per partition: many more records than one micro-batch of the
    # session's stream reads, so the run spans several micro-batches and the kill lands in the middle of it.
    per_request = 100
    records = -(-len(sent) // per_request) * settings.kafka_partitions
    assert records >= 6 * settings.stream_max_offsets_per_trigger, (records, settings.stream_max_offsets_per_trigger)
    post_events(api, [e.body for e in sent], batch_size=per_request, sync=True)
    wait_for(lambda: hot_count(hot, tenant) > 0, 90, "the first micro-batches")

    record = read_pid(settings.home / "run" / "stream.pid")
    assert record is not None and record.alive()
    os.killpg(record.pid, signal.SIGKILL)
    wait_for(lambda: not record.alive(), 10, "the stream job to die")
    partial = hot_count(hot, tenant)
    stack.up(["stream"])  # restarts from the checkpoint

    truth = unique_valid(sent)
    wait_for(lambda: hot_count(hot, tenant) >= len(truth), 180, "the stream to catch up")
    landed_expected = sum(e.kind in ("valid", "duplicate") for e in sent)
    wait_for(lambda: len(landed_rows(settings, tenant)) >= landed_expected, 60, "the landing files")
    # a replayed batch, if any, has landed once both queries have processed everything Kafka holds
    wait_for(lambda: stream_caught_up(hot, settings, ("hot", "landing")), 120, "the stream to catch up with Kafka")

    assert 0 < partial < len(truth), "the kill must happen in the middle of the run"
    assert hot_count(hot, tenant) == len(truth)
    expected = per_minute(truth, tenant)
    actual = hot_minutes(hot, tenant)
    assert {m: r["events"] for m, r in actual.items()} == {m: r["events"] for m, r in expected.items()}
    landed = landed_rows(settings, tenant)
    assert len(landed) == landed_expected
    sent_ids = sorted(e.body["event_id"] for e in sent)
    assert sorted(r["event_id"] for r in landed) == sent_ids


def test_the_hot_node_owns_chdb_and_the_cli_queries_through_it(
    stack: Stack, settings: Settings, hot: HotStore
) -> None:
    with pytest.raises(HotStoreError, match="already owns this chDB folder"):
        ClickHouseHotStore(settings.effective_clickhouse_dsn)
    api_pid = read_pid(settings.home / "run" / "api.pid").pid
    stream_pid = read_pid(settings.home / "run" / "stream.pid").pid
    assert api_pid != stream_pid
    truth = hot.query_arrow("SELECT count() AS n FROM events_raw").to_pylist()[0]["n"]
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "query", "SELECT count() AS n FROM events_raw", "--format", "csv"],
        capture_output=True, text=True, check=True, env=os.environ,
    )
    assert out.stdout.splitlines() == ["n", str(truth)]
