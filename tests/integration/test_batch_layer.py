"""The batch layer under Dagster on the real stack: archive an hour, recompute it, restate the hot tier.

Events are sent through the API into the running stream job, for one hour that holds both instants
the stream still accepts and instants already past its watermark (late: they reach only the lake's
landing area). After ``raw_events_archive`` and ``rollups_hourly`` are materialized for that hour,
the hot tier must equal the generator's ground truth *including* the late events; re-running changes
nothing; more late events are found by the late-landing sensor, which requests exactly that hour.
Dagster runs in-process here (``dagster.materialize``) with the code location's real resources.

The test hour holds the watermark's boundary, so it is still *open* (the stream may add to it): the
late-landing sensor must leave it alone, and the manual runs here restate it only because they are
tagged ``lakehouse/allow_open_hour=true`` (the restatement's guard still refuses to remove a counted
event). Closed hours under load, the sensor's requests for them and the refusals are covered by
``test_restatement_under_load.py``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batch.archive import published_files
from common.hot_store import HotStore
from common.lake import landing_files_by_hour
from common.settings import Settings
from demo.clickstream import Clickstream, GeneratedEvent
from demo.ground_truth import per_minute, unique_valid
from demo.load import post_events
from orchestration.archive.assets import raw_events_archive
from orchestration.archive.checks import (
    archive_files_match_commit,
    archive_is_fresh,
    archive_rows_match_landing,
    archive_schema_conforms,
)
from orchestration.automation import late_landing_sensor
from orchestration.closed_hours import ALLOW_OPEN_HOUR_TAG
from orchestration.hours import floor_hour, partition_key
from orchestration.resources import lakehouse_resources
from orchestration.rollups.assets import rollups_hourly
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.hot_truth import assert_minutes_match, hot_minutes, late_rows_total

pytestmark = pytest.mark.integration

DEFINITIONS = [raw_events_archive, rollups_hourly, archive_rows_match_landing, archive_schema_conforms,
               archive_files_match_commit, archive_is_fresh]
CHECKS = {"archive_rows_match_landing", "archive_schema_conforms", "archive_files_match_commit",
          "archive_is_fresh", "stream_batch_drift"}
MARGIN = timedelta(seconds=90)  # distance kept from the watermark, so "on time" and "late" are unambiguous


@dataclass
class Hour:
    """One test hour and everything sent for it."""

    tenant: str
    hour: datetime
    key: str
    stream: Clickstream
    clock: datetime  # the newest event time the stream has seen: the watermark is this minus its delay
    sent: list[GeneratedEvent] = field(default_factory=list)

    def truth(self) -> list[dict[str, Any]]:
        """Each distinct valid or late event once: what the batch layer must count."""
        return unique_valid(self.sent, kinds=("valid", "late"))

    def on_time(self) -> list[dict[str, Any]]:
        """Each distinct event the stream accepted: what the speed layer counts."""
        return unique_valid(self.sent, kinds=("valid",))

    def landed(self) -> int:
        """Rows the landing area must hold for the tenant: every parsed event, duplicates and late ones too."""
        return sum(e.kind in ("valid", "duplicate", "late") for e in self.sent)


def pick_hour(settings: Settings) -> datetime:
    """The hour holding the watermark's boundary (now − watermark), once it is not too close to the hour's edges.

    Before the boundary lie late instants (a minute of them, ``MARGIN`` before it), after it on-time ones
    (``MARGIN`` after it, with half a minute of room); both must fall inside one hour, so near an hour's edge
    this waits, at most four and a half minutes (with three minutes' margin it waited up to eight).
    """
    watermark = timedelta(minutes=settings.stream_watermark_minutes)
    while True:
        boundary = datetime.now(UTC) - watermark
        into = boundary - floor_hour(boundary)
        if MARGIN + timedelta(minutes=1) <= into <= timedelta(hours=1) - MARGIN - timedelta(seconds=30):
            return floor_hour(boundary)
        time.sleep(10)


def late_events(plan: Hour, settings: Settings, n: int) -> list[GeneratedEvent]:
    """``n`` events of the hour that are already later than the watermark (plus a few resends).

    Anchored on the clock event's time, not on the wall clock: the watermark stands at the newest event time
    the stream saw, and a slow wait for the on-time events must not make "late" events on time.
    """
    before_watermark = plan.clock - timedelta(minutes=settings.stream_watermark_minutes) - MARGIN
    anchor = min(before_watermark, plan.hour + timedelta(hours=1) - timedelta(seconds=1))
    assert anchor - timedelta(minutes=1) >= plan.hour, "the hour has no room left for late events"
    late = plan.stream.late_batch(n, anchor, timedelta(0))
    return late + [GeneratedEvent(dict(e.body), "duplicate") for e in late[: max(1, n // 10)]]


def hot_event_ids(hot: HotStore, tenant: str, hour: datetime) -> list[str]:
    sql = ("SELECT event_id FROM events_raw WHERE tenant = {t:String} "
           "AND toStartOfHour(toDateTime(timestamp)) = {h:DateTime('UTC')}")
    return hot.query_arrow(sql, {"t": tenant, "h": hour.replace(tzinfo=None)}).column("event_id").to_pylist()


def hot_hour(hot: HotStore, tenant: str, hour: datetime) -> dict[str, Any]:
    return hot.query_arrow(
        "SELECT sum(events) AS events, sum(revenue) AS revenue, uniqMerge(users) AS users "
        "FROM rollups_1h WHERE tenant = {t:String} AND hour = {h:DateTime('UTC')}",
        {"t": tenant, "h": hour.replace(tzinfo=None)},
    ).to_pylist()[0]


def landed_rows(settings: Settings, tenant: str, hour: datetime) -> int:
    total = 0
    for path in landing_files_by_hour(settings).get(hour, []):
        table = pq.read_table(path, columns=["tenant"])
        total += pc.sum(pc.equal(table.column("tenant"), tenant)).as_py() or 0
    return total


def assert_hot_tier_equals_truth(hot: HotStore, plan: Hour) -> None:
    truth = plan.truth()
    assert sorted(hot_event_ids(hot, plan.tenant, plan.hour)) == sorted(e["event_id"] for e in truth)
    assert_minutes_match(hot_minutes(hot, plan.tenant, plan.hour), per_minute(truth, plan.tenant))
    hourly = hot_hour(hot, plan.tenant, plan.hour)
    users = len({str(e["user_id"]) for e in truth})
    assert hourly["events"] == len(truth)
    assert hourly["revenue"] == pytest.approx(sum(float(e.get("revenue", 0.0)) for e in truth), abs=1e-6)
    assert abs(hourly["users"] - users) <= max(1, 0.02 * users)


def materialize(plan: Hour, settings: Settings, instance: dg.DagsterInstance,
                tags: dict[str, str] | None = None, open_hour: bool = True) -> dg.ExecuteInProcessResult:
    """Runs both assets for the hour; ``open_hour`` tags the run so that it may restate the open test hour."""
    tags = {**(tags or {}), **({ALLOW_OPEN_HOUR_TAG: "true"} if open_hour else {})}
    result = dg.materialize(DEFINITIONS, partition_key=plan.key, resources=lakehouse_resources(settings),
                            instance=instance, tags=tags, raise_on_error=False)
    assert result.success, [str(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
    return result


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    (event,) = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in event.metadata.items()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def drift_row(result: dg.ExecuteInProcessResult, tenant: str) -> dict[str, Any]:
    table = metadata(result, "rollups_hourly")["drift_by_tenant"]
    return next(r.data for r in table.records if r.data["tenant"] == tenant)


def requested_partitions(settings: Settings, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    resources = lakehouse_resources(settings)
    with dg.build_sensor_context(  # a context manager: the hot-store resource is torn down after the tick
            instance=instance, resources={"lakehouse": resources["lakehouse"], "hot_store": resources["hot_store"]}
    ) as context:
        result = late_landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return list(result.run_requests or [])


@pytest.fixture(scope="module")
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def sent_hour(stack: Stack, api: httpx.Client, hot: HotStore, settings: Settings) -> Hour:
    """One hour with on-time events (3 % resent), then late ones, all processed by the stream and landed."""
    tenant, hour = f"t-{uuid.uuid4().hex[:10]}", pick_hour(settings)
    now = datetime.now(UTC)
    plan = Hour(tenant, hour, partition_key(hour), Clickstream(seed=31, tenants=(tenant,), users_per_tenant=600), now)
    boundary = now - timedelta(minutes=settings.stream_watermark_minutes)
    newest = min(now, plan.hour + timedelta(hours=1) - timedelta(seconds=1))
    spread = (newest - (boundary + MARGIN)).total_seconds()
    plan.sent = plan.stream.batch(3000, newest, disorder_s=spread, duplicate_rate=0.03, malformed_rate=0.0)
    # One event at "now" for another tenant keeps the stream's watermark at now − watermark even when
    # the test hour is the previous one, so that the late events below are late for sure.
    clock = {"tenant": f"{plan.tenant}-clock", "event": "tick", "timestamp": now.isoformat(), "user_id": "clock"}
    post_events(api, [e.body for e in plan.sent] + [clock], sync=True)
    on_time = plan.on_time()
    wait_for(lambda: len(hot_event_ids(hot, plan.tenant, plan.hour)) >= len(on_time), 120,
             "the on-time events in the hot tier")
    wait_for(lambda: len(hot_event_ids(hot, clock["tenant"], floor_hour(now))) == 1, 60, "the clock event")

    late_before = late_rows_total(hot)
    late = late_events(plan, settings, 60)
    post_events(api, [e.body for e in late], sync=True)
    plan.sent += late
    wait_for(lambda: late_rows_total(hot) - late_before >= len(late), 90, "the late events to be dropped as late")
    wait_for(lambda: landed_rows(settings, plan.tenant, plan.hour) >= plan.landed(), 90, "the landing files")
    assert len(hot_event_ids(hot, plan.tenant, plan.hour)) == len(on_time), "late events reached the hot tier"
    return plan


def test_an_hour_is_archived_and_restated_exactly_with_its_late_events(
    sent_hour: Hour, hot: HotStore, settings: Settings, instance: dg.DagsterInstance
) -> None:
    plan = sent_hour
    started = time.perf_counter()
    first = materialize(plan, settings, instance)
    print(f"archive + recompute + restate of {plan.key}: {time.perf_counter() - started:.1f}s")

    checks = check_results(first)
    assert set(checks) == CHECKS
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items() if not c.passed}
    assert_hot_tier_equals_truth(hot, plan)

    # The speed layer's error for this tenant is exactly the late events, and the UI shows it.
    drift = drift_row(first, plan.tenant)
    assert (drift["stream_events"], drift["batch_events"]) == (len(plan.on_time()), len(plan.truth()))
    assert metadata(first, "rollups_hourly")["drift_baseline"] == "speed layer"

    # The archive is readable directly (as a data scientist would) and holds the tenant's truth once.
    archive = metadata(first, "raw_events_archive")
    files = published_files(settings, plan.hour)
    assert files is not None and archive["files"] == len(files)
    rows = [r for f in files for r in pq.read_table(f, columns=["tenant", "event_id"]).to_pylist()]
    assert sorted(r["event_id"] for r in rows if r["tenant"] == plan.tenant) == sorted(
        e["event_id"] for e in plan.truth())
    assert archive["landing_rows"] >= plan.landed() and archive["rows"] < archive["landing_rows"]

    # Nothing new landed: the sensor requests nothing for this hour.
    assert plan.key not in {r.partition_key for r in requested_partitions(settings, instance)}

    # Re-running is idempotent: same archive content, same hot tier.
    second = materialize(plan, settings, instance)
    assert metadata(second, "raw_events_archive")["checksum"] == archive["checksum"]
    assert metadata(second, "raw_events_archive")["rows"] == archive["rows"]
    assert metadata(second, "rollups_hourly")["events"] == metadata(first, "rollups_hourly")["events"]
    assert metadata(second, "rollups_hourly")["max_drift"] == 0.0  # batch vs batch
    assert metadata(second, "rollups_hourly")["drift_baseline"] == "previous restatement"
    assert all(c.passed for c in check_results(second).values())
    assert_hot_tier_equals_truth(hot, plan)


def test_late_events_after_archiving_are_found_by_the_sensor_and_restated(
    sent_hour: Hour, api: httpx.Client, hot: HotStore, settings: Settings, instance: dg.DagsterInstance
) -> None:
    plan = sent_hour
    if not instance.get_materialized_partitions(rollups_hourly.key):
        materialize(plan, settings, instance)  # run alone: archive the hour first
    late = late_events(plan, settings, 40)
    post_events(api, [e.body for e in late], sync=True)
    plan.sent += late
    wait_for(lambda: landed_rows(settings, plan.tenant, plan.hour) >= plan.landed(), 90, "the new landing files")

    # The hour misses landing files in its archive, but it is still open: the sensor does not restate it
    # (it would every minute while the hour fills), and a run without the override refuses, saying why.
    assert plan.key not in {r.partition_key for r in requested_partitions(settings, instance)}
    impatient = settings.model_copy(update={"batch_open_hour_wait_seconds": 1.0})
    refused = dg.materialize(DEFINITIONS, partition_key=plan.key, resources=lakehouse_resources(impatient),
                             instance=instance, raise_on_error=False)
    assert not refused.success
    failure = next(e for e in refused.all_events if e.is_step_failure)
    assert "is still open" in str(failure.step_failure_data.error)
    assert "watermark has not passed" in str(failure.step_failure_data.error)

    result = materialize(plan, settings, instance)
    assert all(c.passed for c in check_results(result).values())
    assert drift_row(result, plan.tenant)["batch_events"] == len(plan.truth())
    assert_hot_tier_equals_truth(hot, plan)
    assert plan.key not in {r.partition_key for r in requested_partitions(settings, instance)}
