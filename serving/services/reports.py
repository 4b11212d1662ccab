"""Scheduled reports: the schedules' service (checks and saves them) and the delivery of one period.

``ReportSchedules`` is what the API's routes call: a schedule names a saved dashboard of the caller's tenant
(checked when it is saved), a webhook is checked by the egress guard, email needs the SMTP settings.

``ScheduledReports.deliver`` is what the Dagster job calls for one (schedule, period): it renders the
dashboard over exactly that period (the same ``DashboardService`` answer the web dashboard and the PDF route
print: spec builder, tier routing, cache, tenant), makes the PDF and one CSV per widget, and sends them on
each channel it can claim (``serving.reports.schedule_store.DeliveryLog``): a channel already delivered, or
being delivered by another run, is skipped, so the period goes out once per channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
from starlette.concurrency import run_in_threadpool

from common.events import format_ts
from common.hot_store import HotStore
from common.settings import Settings
from serving.analytics.kpis import KpiStore
from serving.cache import QueryCache
from serving.dashboards.store import DashboardStore
from serving.query.csv_export import csv_bytes, csv_filename
from serving.query.engine import QueryEngine
from serving.reports.delivery import Attachment, Attempt, EmailSender, RenderedReport, WebhookReportSender
from serving.reports.pdf import render_dashboard
from serving.reports.schedule_store import DeliveryLog, ScheduleStore, new_schedule_id
from serving.reports.schedules import CADENCES, Period, ReportSchedule, ScheduleError, checked_schedule
from serving.services.dashboards import DashboardService
from serving.webhook_guard import EgressPolicy, EgressRefused


@dataclass(frozen=True)
class ScheduleDraft:
    """A schedule as a client sends it."""

    dashboard: str
    cadence: str
    at: str
    tz: str = "UTC"
    weekday: str | None = None
    formats: list[str] = field(default_factory=lambda: ["pdf", "csv"])
    email: list[str] = field(default_factory=list)
    webhook: str | None = None
    filters: list[str] = field(default_factory=list)


class ReportSchedules:
    """CRUD of report schedules off the event loop, with every check made before anything is saved."""

    def __init__(self, schedules: ScheduleStore, dashboards: DashboardStore, log: DeliveryLog,
                 settings: Settings) -> None:
        self._schedules = schedules
        self._dashboards = dashboards
        self._log = log
        self._settings = settings
        self._egress = EgressPolicy.from_settings(settings)

    def _checked(self, tenant: str, draft: ScheduleDraft) -> ReportSchedule:
        self._dashboards.get(tenant, draft.dashboard)  # DashboardNotFound (404) for another tenant's too
        schedule = checked_schedule(
            schedule_id=new_schedule_id(), tenant=tenant, dashboard=draft.dashboard, cadence=draft.cadence,
            at=draft.at, tz=draft.tz, weekday=draft.weekday, formats=draft.formats, email=draft.email,
            webhook=draft.webhook, filters=draft.filters, created=_ms(datetime.now(UTC)),
            email_enabled=bool(self._settings.smtp_host))
        if schedule.webhook_url:
            url = httpx.URL(schedule.webhook_url)
            try:
                self._egress.check_at_creation(url.host, url.port or (443 if url.scheme == "https" else 80))
            except EgressRefused as exc:
                raise ScheduleError(str(exc)) from None
        return schedule

    async def create(self, tenant: str, draft: ScheduleDraft) -> ReportSchedule:
        def save() -> ReportSchedule:
            schedule = self._checked(tenant, draft)
            self._schedules.put(schedule)
            return schedule
        return await run_in_threadpool(save)

    async def list(self, tenant: str) -> list[ReportSchedule]:
        return await run_in_threadpool(self._schedules.list, tenant)

    async def get(self, tenant: str, schedule_id: str) -> ReportSchedule:
        return await run_in_threadpool(self._schedules.get, tenant, schedule_id)

    async def delete(self, tenant: str, schedule_id: str) -> None:
        await run_in_threadpool(self._schedules.delete, tenant, schedule_id)

    async def history(self, tenant: str, schedule_id: str) -> list[dict[str, Any]]:
        await self.get(tenant, schedule_id)  # 404 for an unknown (or another tenant's) schedule
        rows = await run_in_threadpool(self._log.history, tenant, schedule_id)
        return [{**r, "at": format_ts(_utc(r["at"]))} for r in rows]


@dataclass
class ChannelOutcome:
    channel: str
    status: str  # sent | skipped | failed
    detail: str = ""
    permanent: bool = False


@dataclass
class PeriodDelivery:
    """What one run did for one period: each channel's outcome."""

    schedule_id: str
    period: str
    outcomes: list[ChannelOutcome] = field(default_factory=list)

    @property
    def transient_failures(self) -> list[ChannelOutcome]:
        return [o for o in self.outcomes if o.status == "failed" and not o.permanent]

    @property
    def permanent_failures(self) -> list[ChannelOutcome]:
        return [o for o in self.outcomes if o.status == "failed" and o.permanent]


def period_starting(schedule: ReportSchedule, first_day: date) -> Period:
    """The period of ``schedule`` whose first day is ``first_day``."""
    return schedule.period_of(first_day + timedelta(days=CADENCES[schedule.cadence]))


class ScheduledReports:
    """Renders and delivers one period of one schedule (blocking: runs its own event loop for the queries)."""

    def __init__(self, settings: Settings, store: HotStore, engine: QueryEngine,
                 cache_factory: Callable[[], QueryCache] | None = None,
                 email: EmailSender | None = None, webhook: WebhookReportSender | None = None) -> None:
        self._settings = settings
        self._store = store
        self._engine = engine
        self._cache_factory = cache_factory or (lambda: QueryCache(settings.redis_url))
        self.schedules = ScheduleStore(store)
        self.log = DeliveryLog(store, settings.report_claim_lease_seconds)
        self._email = email or EmailSender(settings)
        self._webhook = webhook or WebhookReportSender(settings)

    def render(self, schedule: ReportSchedule, period: Period) -> RenderedReport:
        """The PDF and the CSVs of the schedule's dashboard over ``period`` (only the formats it asks for)."""
        data = asyncio.run(self._dashboard_data(schedule, period))
        dashboard = data["name"]
        label = period.label()
        stamp = period.first_day.isoformat()
        attachments = []
        if "pdf" in schedule.formats:
            printed = {**data, "range": f"{label} ({schedule.tz})"}
            attachments.append(Attachment(f"{_safe(schedule.dashboard)}-{stamp}.pdf", "application/pdf",
                                          render_dashboard(printed, schedule.tenant)))
        if "csv" in schedule.formats:
            for widget in data["widgets"]:
                if "error" in widget:
                    continue
                attachments.append(Attachment(csv_filename(schedule.dashboard, widget["id"], stamp), "text/csv",
                                              csv_bytes(widget["columns"], widget["rows"])))
        facts = {"schedule": schedule.id, "tenant": schedule.tenant, "dashboard": schedule.dashboard,
                 "name": dashboard, "period": period.key, "from": format_ts(period.start, "auto"),
                 "to": format_ts(period.end, "auto"), "tz": schedule.tz, "generated_at": data["generated_at"],
                 "files": [a.filename for a in attachments]}
        widgets = "\n".join(f"  - {w.get('title') or w['id']}" + (f": cannot be shown ({w['error']})"
                                                                  if "error" in w else "")
                            for w in data["widgets"])
        summary = (f"{dashboard} for {label} ({schedule.tz}), tenant {schedule.tenant}.\n"
                   f"From {facts['from']} to {facts['to']} (UTC), generated {data['generated_at']}.\n\n"
                   f"Widgets:\n{widgets}\n\nAttached: {', '.join(facts['files'])}.\n"
                   f"Report schedule {schedule.id} ({schedule.cadence} at {schedule.at} {schedule.tz}).\n")
        return RenderedReport(f"{dashboard}: {schedule.cadence} report for {label}", summary, facts,
                              tuple(attachments))

    async def _dashboard_data(self, schedule: ReportSchedule, period: Period) -> dict[str, Any]:
        cache = self._cache_factory()
        try:
            service = DashboardService(DashboardStore(self._store), self._engine, cache, self._settings,
                                       KpiStore(self._store))
            view = await service.view(schedule.tenant, schedule.dashboard, None, list(schedule.filters), schedule.tz)
            view = replace(view, span=(period.start, period.end))
            return orjson.loads((await service.data(schedule.tenant, view)).body)
        finally:
            await cache.close()

    def deliver(self, schedule: ReportSchedule, period: Period, run_id: str,
                note: Callable[[str], None] = lambda _: None) -> PeriodDelivery:
        """Send ``period`` on each channel of ``schedule`` that this run can claim; every step is recorded."""
        done = PeriodDelivery(schedule.id, period.key)
        claims = {}
        for channel in schedule.channels:
            claim = self.log.claim(schedule, period.key, channel, run_id)
            if claim.owned:
                claims[channel] = claim.generation
            else:
                done.outcomes.append(ChannelOutcome(channel, "skipped", claim.reason))
                note(f"{channel}: skipped, {claim.reason}")
        if not claims:
            return done
        report = self.render(schedule, period)
        note(f"rendered {', '.join(a.filename for a in report.attachments)}")
        for channel, generation in claims.items():
            if channel == "email":
                attempts = self._email.send(report, schedule.email_to)
            else:
                attempts = self._webhook.send(report, schedule.webhook_url)
            done.outcomes.append(self._record(schedule, period, channel, generation, run_id, attempts))
            note(f"{channel}: {done.outcomes[-1].status} ({done.outcomes[-1].detail})")
        return done

    def _record(self, schedule: ReportSchedule, period: Period, channel: str, generation: int, run_id: str,
                attempts: list[Attempt]) -> ChannelOutcome:
        for attempt in attempts:
            if not attempt.ok:
                self.log.record(schedule, period.key, channel, generation, "attempt_failed", run_id,
                                attempt.number, attempt.detail)
        last = attempts[-1]
        if last.ok:
            self.log.record(schedule, period.key, channel, generation, "sent", run_id, last.number, last.detail)
            return ChannelOutcome(channel, "sent", last.detail)
        self.log.record(schedule, period.key, channel, generation, "failed", run_id, last.number,
                        ("permanent: " if last.permanent else "") + last.detail)
        return ChannelOutcome(channel, "failed", last.detail, last.permanent)


def _safe(text: str) -> str:
    return csv_filename(text).removesuffix(".csv")


def _ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
