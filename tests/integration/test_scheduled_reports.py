"""A scheduled report on the real stack: the Dagster daemon (`dagster dev`) fires it at its time, it arrives once
at a local SMTP server and a local webhook with the PDF and the CSVs holding the period's numbers, and a daemon
restart sends nothing more.

The period is yesterday in the schedule's zone; its events are written straight into the hot tier (the stream
drops events older than its watermark as late), and the truth is counted from what the test wrote.
"""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa
import pytest
from aiosmtpd.controller import Controller

from common.hot_store import HotStore
from common.settings import Settings
from orchestration.instance import start_dagster_dev
from serving.tenancy.auth import bearer_headers
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.direct_hot import events_table, insert_events
from tests.integration.test_dagster_ui import free_port, graphql
from tests.report_receivers import Mailbox, Receiver, attachments, multipart_files, zone_in_daytime

pytestmark = pytest.mark.integration

SENSOR_TICKS = """
query Ticks($after: Float) {
  sensorOrError(sensorSelector: {repositoryLocationName: "lakehouse", repositoryName: "__repository__",
                                 sensorName: "report_schedules_sensor"}) {
    __typename
    ... on Sensor { sensorState { ticks(afterTimestamp: $after) { status timestamp runIds } } }
    ... on Error { message }
  }
}
"""
RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId status } } }
}
"""


@contextmanager
def dagster_dev(home: Path, log_path: Path) -> Iterator[httpx.Client]:
    """`dagster dev` (webserver and daemon) on ``home``, stopped with SIGTERM on exit."""
    port = free_port()
    with log_path.open("ab") as log:
        process = start_dagster_dev(Settings(), port=port, home=home, output=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def answers() -> bool:
        assert process.poll() is None, f"dagster dev exited: {log_path.read_text()[-3000:]}"
        try:
            return client.get("/server_info").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, 120, "dagster dev to answer /server_info")
        yield client
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def completed_ticks(ui: httpx.Client, after: float) -> list[dict]:
    """The report sensor's ticks that finished (skipped or requested runs) after ``after`` (epoch seconds)."""
    sensor = graphql(ui, SENSOR_TICKS, after=after)["sensorOrError"]
    assert sensor["__typename"] == "Sensor", sensor
    return [t for t in sensor["sensorState"]["ticks"] if t["status"] in ("SKIPPED", "SUCCESS")]


def _totals(files: dict[str, bytes]) -> dict[str, str]:
    name = next(n for n in files if n.startswith("overview-totals-"))
    return next(csv.DictReader(io.StringIO(files[name].decode())))


def test_a_scheduled_report_fires_once_and_a_dagster_restart_does_not_send_it_again(
        stack: Stack, settings: Settings, hot: HotStore, api: httpx.Client, tenant: str, tmp_path: Path) -> None:
    box = Mailbox()
    smtp = Controller(box, hostname="127.0.0.1", port=settings.smtp_port)
    smtp.start()
    receiver = Receiver()
    try:
        assert api.post("/v1/admin/tenants", json={"id": tenant}).status_code == 201
        key = api.post(f"/v1/admin/tenants/{tenant}/keys", json={"role": "tenant"}).json()["key"]

        # Dagster first: the schedule's time is then the next minute boundary at least 10 s away (created before
        # it, so due at it), not two minutes ahead to leave room for the daemon's start.
        home = tmp_path / "dagster_home"
        with dagster_dev(home, tmp_path / "dagster.log") as ui:
            now = datetime.now(UTC)
            tz = zone_in_daytime(now)
            day = now.astimezone(ZoneInfo(tz)).date()
            start = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZoneInfo(tz)).astimezone(UTC)
            end = datetime.combine(day, datetime.min.time(), ZoneInfo(tz)).astimezone(UTC)
            laid: list[tuple[datetime, int, str]] = [(start, 7, "DE"), (start + timedelta(hours=5), 11, "US"),
                                                     (end - timedelta(seconds=2), 5, "DE"),
                                                     (start - timedelta(minutes=1), 13, "US"), (end, 17, "DE")]
            insert_events(hot, pa.concat_tables([events_table(tenant, at, n, country=c) for at, n, c in laid]))
            inside = sum(n for at, n, _ in laid if start <= at < end)

            fires = (datetime.now(UTC) + timedelta(seconds=70)).astimezone(ZoneInfo(tz)).replace(second=0,
                                                                                                 microsecond=0)
            created = httpx.post(f"{settings.api_url}/v1/reports/schedules", headers=bearer_headers(key), json={
                "dashboard": "overview", "cadence": "daily", "at": fires.strftime("%H:%M"), "tz": tz,
                "email": ["team@example.com"], "webhook": receiver.url}, timeout=30)
            assert created.status_code == 201, created.text
            schedule_id = created.json()["id"]
            tags = [{"key": "lakehouse/report_schedule", "value": schedule_id}]

            arrived: list[datetime] = []  # when the first delivery was seen (some time after it arrived)

            def delivered() -> bool:
                if (box.messages or receiver.posts) and not arrived:
                    arrived.append(datetime.now(UTC))
                return bool(box.messages) and bool(receiver.delivered())

            wait_for(delivered, 420, "the scheduled report by email and webhook", interval=1)
            assert arrived[0] >= fires, f"the report arrived before its time {fires.isoformat()}"
            print(f"delivered {(datetime.now(UTC) - fires).total_seconds():.0f}s after its time")
            wait_for(lambda: all(r["status"] == "SUCCESS" for r in graphql(ui, RUNS, tags=tags)["runsOrError"][
                "results"]), 60, "the report's run to finish")
            runs = graphql(ui, RUNS, tags=tags)["runsOrError"]["results"]
            assert len(runs) == 1, runs
        period = (day - timedelta(days=1)).isoformat()
        for files in (attachments(box.messages[0][1]), multipart_files(*receiver.delivered()[0][1:])):
            assert f"overview-{period}.pdf" in files and files[f"overview-{period}.pdf"].startswith(b"%PDF")
            assert int(_totals(files)["events"]) == inside

        # the daemon restarts on the same instance: its sensor ticks again, and nothing more is sent
        restarted = time.time()
        with dagster_dev(home, tmp_path / "dagster.log") as ui:
            # two completed ticks of the restarted daemon's sensor: a run either asked for is in the run list
            wait_for(lambda: len(completed_ticks(ui, after=restarted)) >= 2, 120,
                     "two ticks of the restarted daemon's report sensor", interval=1)
            runs = graphql(ui, RUNS, tags=tags)["runsOrError"]["results"]
        assert len(runs) == 1, runs
        assert len(box.messages) == 1 and len(receiver.delivered()) == 1
        history = httpx.get(f"{settings.api_url}/v1/reports/schedules/{schedule_id}/deliveries",
                            headers=bearer_headers(key), timeout=30).json()["deliveries"]
        assert sorted(d["channel"] for d in history if d["kind"] == "sent") == ["email", "webhook"]
    finally:
        smtp.stop()
        receiver.server.shutdown()


