"""Scheduled reports end to end: a schedule saved over the API, found due by the Dagster sensor when its time
comes, delivered by the ``scheduled_report`` job (run in process) to a real local SMTP server (aiosmtpd) and a
real local HTTP receiver, with the PDF and CSVs holding the period's true numbers; and delivered once: a second
run of the period, a second claimant, a sensor tick after it, send nothing more.

The job reaches the hot store the way Dagster runs do, through a hot node (Arrow Flight) serving this tier's
chDB. The data is this test's own tenant's events, laid into the hot tier around the period's edges; the
truth is computed from those events, never through the code under test.
"""

from __future__ import annotations

import csv
import io
import random
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from common.hot_store import HotStore
from common.settings import Settings
from orchestration.reports.jobs import report_schedules_sensor, scheduled_report
from orchestration.reports.resources import reports_resources
from orchestration.resources import lakehouse_resources
from serving.hot_node import start_hot_node
from serving.query.engine import QueryEngine
from serving.reports.pdf import number
from serving.reports.schedule_store import DeliveryLog
from serving.services.reports import ScheduledReports, period_starting
from serving.tenancy.auth import bearer_headers
from tests.component.conftest import app_over, closed_port
from tests.component.seed import by_dimension, lay_hot, total, within
from tests.report_receivers import Mailbox, Receiver, attachments, multipart_files, zone_in_daytime

TENANT = "reportco"
OVERVIEW_WIDGETS = ("totals", "events_over_time", "by_country", "by_device", "top_pages")


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=closed_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def report_settings(settings: Settings, hot: HotStore, mailbox: tuple[Mailbox, int]) -> Iterator[Settings]:
    """The settings of a Dagster run: the hot store through a hot node, the local SMTP server, private
    webhooks allowed for the local receiver only, quick retries."""
    token = uuid.uuid4().hex
    url = f"grpc://127.0.0.1:{closed_port()}"
    node = start_hot_node(hot, url, token)
    yield settings.model_copy(update={
        "hot_store_mode": "remote", "hot_node_url": url, "hot_node_token": token,
        "smtp_host": "127.0.0.1", "smtp_port": mailbox[1], "smtp_starttls": False,
        "smtp_from": "reports@lakehouse.test", "webhook_allow_private_cidrs": "127.0.0.1/32",
        "report_retry_backoff_seconds": 0.05, "report_delivery_attempts": 3,
    })
    node.shutdown()


@pytest.fixture(scope="module")
def api(settings: Settings, hot: HotStore, report_settings: Settings) -> Iterator[TestClient]:
    """The app as served with SMTP configured and the local receiver allowed."""
    with app_over(settings, hot, smtp_host="127.0.0.1", smtp_port=report_settings.smtp_port,
                  webhook_allow_private_cidrs="127.0.0.1/32") as client:
        yield client


@pytest.fixture(scope="module")
def tenant_keys(api: TestClient, client: TestClient) -> dict[str, dict[str, str]]:
    """Bearer headers of this test's tenant and of another one."""
    headers = {}
    for tenant in (TENANT, "acme"):
        api.post("/v1/admin/tenants", json={"id": tenant})  # 409 when another test created it: fine
        answer = api.post(f"/v1/admin/tenants/{tenant}/keys", json={"role": "tenant"})
        assert answer.status_code == 201, answer.text
        headers[tenant] = bearer_headers(answer.json()["key"])
    return headers


def _events(start: datetime, end: datetime, seed: int) -> list[dict[str, Any]]:
    """Events spread over [start, end), and a few just outside it (which the report must leave out)."""
    rng = random.Random(seed)
    span = int((end - start).total_seconds())
    moments = [start + timedelta(seconds=rng.randrange(span)) for _ in range(60)]
    moments += [start, end - timedelta(seconds=1), start - timedelta(seconds=1), end, end + timedelta(minutes=5)]
    out = []
    for at in moments:
        name = rng.choice(("page_view", "page_view", "click", "purchase"))
        out.append({"tenant": TENANT, "event": name, "timestamp": at.replace(microsecond=0),
                    "event_id": uuid.uuid4().hex, "user_id": f"u{rng.randint(1, 25)}",
                    "page": rng.choice(("/", "/docs", "/pricing")), "country": rng.choice(("US", "DE", "BR")),
                    "device": rng.choice(("mobile", "desktop")),
                    "revenue": rng.randint(1, 400) / 4 if name == "purchase" else 0.0, "properties": "",
                    "received_at": at})
    return out


def _resources(report_settings: Settings, as_of: datetime | None = None) -> dict[str, Any]:
    base = lakehouse_resources(report_settings)
    return {**base, **reports_resources(base["lakehouse"], as_of.isoformat() if as_of else "")}  # type: ignore[arg-type]


def _sensor_requests(report_settings: Settings, at: datetime, schedule_id: str) -> list[dg.RunRequest]:
    with dg.build_sensor_context(resources=_resources(report_settings, at)) as context:
        result = report_schedules_sensor(context)
    return [r for r in result.run_requests or [] if r.tags.get("lakehouse/report_schedule") == schedule_id]


def _run(report_settings: Settings, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return scheduled_report.execute_in_process(run_config=request.run_config, resources=_resources(report_settings),
                                               instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def _csv(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def _pdf_text(content: bytes, tmp_path: Path) -> str:
    pdf = tmp_path / f"{uuid.uuid4().hex}.pdf"
    pdf.write_bytes(content)
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def _check_report(files: dict[str, bytes], events: list[dict[str, Any]], key: str, tmp_path: Path) -> None:
    """The PDF and the CSVs hold the period's true numbers."""
    assert {name for name in files if name.endswith(".csv")} == {f"overview-{w}-{key}.csv" for w in OVERVIEW_WIDGETS}
    totals = _csv(files[f"overview-totals-{key}.csv"])
    assert len(totals) == 1
    assert float(totals[0]["events"]) == total(events, "events")
    assert float(totals[0]["revenue"]) == pytest.approx(total(events, "revenue"))
    assert float(totals[0]["unique_users"]) == total(events, "unique_users")
    countries = {row["country"]: float(row["events"]) for row in _csv(files[f"overview-by_country-{key}.csv"])}
    assert countries == by_dimension(events, "country", "events")
    text = _pdf_text(files[f"overview-{key}.pdf"], tmp_path)
    pages = text.split("\f")
    assert TENANT in pages[0] and key in pages[0]
    assert number(total(events, "events")) in pages[1].split() and number(total(events, "revenue")) in pages[1].split()
    for country, count in by_dimension(events, "country", "events").items():
        assert any(country in line and number(count) in line.split() for line in pages[3].splitlines())


# ------------------------------------------------------------------------------------------------ tests


def test_a_daily_report_fires_at_its_time_arrives_once_by_email_and_webhook_with_the_true_numbers(
        api: TestClient, tenant_keys: dict[str, dict[str, str]], hot: HotStore, report_settings: Settings,
        mailbox: tuple[Mailbox, int], receiver: Receiver, tmp_path: Path) -> None:
    box = mailbox[0]
    now = datetime.now(UTC)
    tz = zone_in_daytime(now)
    local_now = now.astimezone(ZoneInfo(tz))
    at = (local_now + timedelta(minutes=2)).strftime("%H:%M")
    answer = api.post("/v1/reports/schedules", headers=tenant_keys[TENANT], json={
        "dashboard": "overview", "cadence": "daily", "at": at, "tz": tz,
        "email": ["team@example.com", "boss@example.com"], "webhook": receiver.url})
    assert answer.status_code == 201, answer.text
    schedule = answer.json()
    assert answer.headers["location"] == f"/v1/reports/schedules/{schedule['id']}"

    # the period is yesterday in the schedule's zone; the events around its edges are the test's truth
    day = local_now.date()
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZoneInfo(tz)).astimezone(UTC)
    end = datetime.combine(day, datetime.min.time(), ZoneInfo(tz)).astimezone(UTC)
    laid = _events(start, end, seed=7)
    lay_hot(hot, laid)
    truth = within(laid, start, end)
    key = (day - timedelta(days=1)).isoformat()
    fires = datetime.combine(day, datetime.strptime(at, "%H:%M").time(), ZoneInfo(tz)).astimezone(UTC)

    assert _sensor_requests(report_settings, fires - timedelta(seconds=1), schedule["id"]) == []  # not yet
    requests = _sensor_requests(report_settings, fires + timedelta(seconds=30), schedule["id"])
    assert len(requests) == 1 and requests[0].run_key == f"{schedule['id']}:{key}/1d"

    receiver.answers = [503]  # the webhook's first attempt fails: retried within the run
    result = _run(report_settings, requests[0])
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    assert len(box.messages) == 1
    recipients, message = box.messages[0]
    assert sorted(recipients) == ["boss@example.com", "team@example.com"]
    assert message["From"] == "reports@lakehouse.test" and key in message["Subject"]
    _check_report(attachments(message), truth, key, tmp_path)

    assert [p[0] for p in receiver.posts] == [503, 200]
    _status, headers, body = receiver.delivered()[0]
    assert headers["Content-Type"].startswith("multipart/form-data")
    assert headers["Host"] == receiver.url.split("/")[2] and headers["User-Agent"] == "lakehouse-reports/1"
    _check_report(multipart_files(headers, body), truth, key, tmp_path)

    # a re-run of the period (a re-execution, or another daemon's run) sends nothing, and the sensor is done
    again = _run(report_settings, requests[0])
    assert again.success
    assert len(box.messages) == 1 and len(receiver.posts) == 2
    assert _sensor_requests(report_settings, fires + timedelta(minutes=5), schedule["id"]) == []

    history = api.get(f"/v1/reports/schedules/{schedule['id']}/deliveries", headers=tenant_keys[TENANT])
    assert history.status_code == 200, history.text
    kinds = [(d["channel"], d["kind"]) for d in history.json()["deliveries"] if d["period"] == f"{key}/1d"]
    assert kinds.count(("email", "sent")) == 1 and kinds.count(("webhook", "sent")) == 1
    assert ("webhook", "attempt_failed") in kinds
    failed = next(d for d in history.json()["deliveries"] if d["kind"] == "attempt_failed")
    assert failed["detail"] == "HTTP 503"


def test_schedules_belong_to_their_tenant_and_bad_ones_are_refused(
        api: TestClient, tenant_keys: dict[str, dict[str, str]], receiver: Receiver) -> None:
    mine, other = tenant_keys[TENANT], tenant_keys["acme"]
    created = api.post("/v1/reports/schedules", headers=mine, json={
        "dashboard": "overview", "cadence": "weekly", "weekday": "monday", "at": "07:30", "tz": "Europe/Berlin",
        "formats": ["csv"], "webhook": receiver.url, "filter": ["country:US"]})
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["weekday"] == "monday" and schedule["formats"] == ["csv"] and schedule["filter"] == ["country:US"]
    path = f"/v1/reports/schedules/{schedule['id']}"
    assert api.get(path, headers=mine).json()["id"] == schedule["id"]
    assert schedule["id"] in [s["id"] for s in api.get("/v1/reports/schedules", headers=mine).json()["schedules"]]

    assert api.get(path, headers=other).status_code == 404
    assert api.get(f"{path}/deliveries", headers=other).status_code == 404
    assert api.delete(path, headers=other).status_code == 404
    assert schedule["id"] not in [s["id"] for s in api.get("/v1/reports/schedules", headers=other).json()["schedules"]]

    own_dashboard = api.post("/v1/dashboards", headers=other, json={"name": "acme's", "widgets": []})
    assert own_dashboard.status_code == 201
    refused = api.post("/v1/reports/schedules", headers=mine, json={
        "dashboard": own_dashboard.json()["id"], "cadence": "daily", "at": "08:00", "webhook": receiver.url})
    assert refused.status_code == 404  # another tenant's dashboard does not exist for this one

    for body, words in [
        ({"cadence": "daily", "at": "8am", "webhook": receiver.url}, "HH:MM"),
        ({"cadence": "daily", "at": "08:00", "tz": "Mars/Base", "webhook": receiver.url}, "Mars/Base"),
        ({"cadence": "weekly", "at": "08:00", "webhook": receiver.url}, "weekday"),
        ({"cadence": "daily", "at": "08:00"}, "where the report goes"),
        ({"cadence": "daily", "at": "08:00", "email": ["a@b.example\r\nBcc: c@d.example"]}, "not an email"),
        ({"cadence": "daily", "at": "08:00", "webhook": "http://169.254.169.254/latest/meta-data"}, "link-local"),
        ({"cadence": "daily", "at": "08:00", "webhook": "http://10.1.2.3/hook"}, "private"),
    ]:
        answer = api.post("/v1/reports/schedules", headers=mine, json={"dashboard": "overview", **body})
        assert answer.status_code == 400, (body, answer.text)
        assert words in answer.json()["error"], (body, answer.text)

    assert api.delete(path, headers=mine).status_code == 204
    assert api.get(path, headers=mine).status_code == 404


def test_of_many_runs_claiming_one_period_at_once_exactly_one_wins(hot: HotStore, report_settings: Settings) -> None:
    from common.hot_store import FlightHotStore
    from serving.reports.schedules import checked_schedule

    store = FlightHotStore.for_settings(report_settings)
    schedule = checked_schedule(schedule_id=f"rs-race-{uuid.uuid4().hex[:6]}", tenant=TENANT, dashboard="overview",
                                cadence="daily", at="08:00", tz="UTC", weekday=None, formats=["pdf"], email=[],
                                webhook="http://example.com/h", filters=[], created=datetime.now(UTC),
                                email_enabled=False)
    log = DeliveryLog(store)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: log.claim(schedule, "2026-11-25/1d", "webhook", f"run-{i}"), range(8)))
    assert sum(c.owned for c in claims) == 1, claims
    assert {c.generation for c in claims} == {1}
    # the owner's retried step still owns it; a new run does not while the claim is live
    owner = f"run-{next(i for i, c in enumerate(claims) if c.owned)}"
    assert log.claim(schedule, "2026-11-25/1d", "webhook", owner).owned
    assert not log.claim(schedule, "2026-11-25/1d", "webhook", "run-late").owned
    store.close()


def test_a_failed_delivery_is_recorded_and_the_next_run_delivers_the_period(
        api: TestClient, tenant_keys: dict[str, dict[str, str]], report_settings: Settings,
        mailbox: tuple[Mailbox, int]) -> None:
    from common.hot_store import FlightHotStore

    box = mailbox[0]
    created = api.post("/v1/reports/schedules", headers=tenant_keys[TENANT], json={
        "dashboard": "overview", "cadence": "daily", "at": "06:00", "formats": ["csv"], "email": ["ops@example.com"]})
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    store = FlightHotStore.for_settings(report_settings)
    down = report_settings.model_copy(update={"smtp_port": closed_port()})  # the SMTP server does not answer
    first = ScheduledReports(down, store, QueryEngine.for_settings(down, store))
    schedule = first.schedules.get(TENANT, schedule_id)
    period = period_starting(schedule, datetime.now(UTC).date() - timedelta(days=1))
    outcome = first.deliver(schedule, period, "run-down")
    assert [(o.channel, o.status, o.permanent) for o in outcome.outcomes] == [("email", "failed", False)]
    before = len(box.messages)

    second = ScheduledReports(report_settings, store, QueryEngine.for_settings(report_settings, store))
    assert [o.status for o in second.deliver(schedule, period, "run-up").outcomes] == ["sent"]
    assert len(box.messages) == before + 1
    assert [o.status for o in second.deliver(schedule, period, "run-again").outcomes] == ["skipped"]
    assert len(box.messages) == before + 1

    kinds = [d["kind"] for d in api.get(f"/v1/reports/schedules/{schedule_id}/deliveries",
                                        headers=tenant_keys[TENANT]).json()["deliveries"]]
    assert kinds == ["claimed", "attempt_failed", "attempt_failed", "attempt_failed", "failed", "claimed", "sent"]
    store.close()


def test_a_webhook_that_refuses_the_report_fails_the_run_without_retries(
        api: TestClient, tenant_keys: dict[str, dict[str, str]], report_settings: Settings,
        receiver: Receiver) -> None:
    created = api.post("/v1/reports/schedules", headers=tenant_keys[TENANT], json={
        "dashboard": "overview", "cadence": "daily", "at": "00:00", "formats": ["pdf"], "webhook": receiver.url})
    schedule_id = created.json()["id"]
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    request = dg.RunRequest(run_config={"ops": {"deliver_scheduled_report": {"config": {
        "tenant": TENANT, "schedule_id": schedule_id, "first_day": yesterday}}}})
    posts = len(receiver.posts)
    receiver.answers = [404]
    result = _run(report_settings, request)
    assert not result.success
    assert len(receiver.posts) == posts + 1  # a 404 is not retried, neither within the run nor by Dagster
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "cannot be delivered" in failure.message or "cannot be delivered" in str(failure.event_specific_data)
    history = api.get(f"/v1/reports/schedules/{schedule_id}/deliveries", headers=tenant_keys[TENANT]).json()
    assert [d["kind"] for d in history["deliveries"]][-1] == "failed"
    assert history["deliveries"][-1]["detail"] == "permanent: HTTP 404"
