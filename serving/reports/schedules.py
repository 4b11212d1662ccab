"""A report schedule: which dashboard goes to whom, how often, and which period each delivery covers.

A schedule fires daily, or weekly on one weekday, at a wall-clock time in its own time zone. Each firing
delivers the *complete* period before it in that zone: the previous calendar day for a daily schedule, the
seven calendar days before the firing day for a weekly one. A period is named by its first day and length
(``2026-11-25/1d``), which is what makes a delivery unique: one period of one schedule is sent once per
channel, however many runs, retries or daemons look at it (``serving.reports.schedule_store``).

Wall-clock times follow the zone's rules: a time that does not exist on a spring-forward day fires at the
first instant after the gap, a repeated time on a fall-back day fires at its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from common.events import format_ts
from serving.query.buckets import BadTimeZone, zone
from serving.query.spec import QueryError, parse_filter_params

CADENCES = {"daily": 1, "weekly": 7}
FORMATS = ("pdf", "csv")
CHANNELS = ("email", "webhook")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_RECIPIENTS = 20
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# deliberately plain: one @, no spaces or angle brackets or commas (which would smuggle in more recipients
# or headers); the SMTP server is the judge of the rest
_EMAIL = re.compile(r"^[^@\s<>,;\"']{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")


class ScheduleError(ValueError):
    """A schedule that cannot be saved as sent; the message says what to change."""


class ScheduleNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Period:
    """The span one delivery covers, and the instant it became due."""

    start: datetime  # UTC, the zone's midnight of the first day
    end: datetime  # UTC, exclusive
    first_day: date  # in the schedule's zone
    days: int
    due_at: datetime  # UTC

    @property
    def key(self) -> str:
        return f"{self.first_day.isoformat()}/{self.days}d"

    def label(self) -> str:
        last = self.first_day + timedelta(days=self.days - 1)
        return self.first_day.isoformat() if self.days == 1 else f"{self.first_day.isoformat()} to {last.isoformat()}"


@dataclass(frozen=True)
class ReportSchedule:
    id: str
    tenant: str
    dashboard: str
    cadence: str  # daily | weekly
    at: str  # HH:MM, wall clock in tz
    tz: str
    weekday: int = 0  # 0 = Monday; weekly only
    formats: tuple[str, ...] = FORMATS
    email_to: tuple[str, ...] = ()
    webhook_url: str = ""
    filters: tuple[str, ...] = ()  # dim:value, dim!=value: as the dashboard's `filter` parameter
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, on in (("email", bool(self.email_to)), ("webhook", bool(self.webhook_url))) if on)

    def fire_time(self, day: date) -> datetime:
        """When the schedule fires on ``day`` of its zone (UTC)."""
        hour, minute = (int(p) for p in self.at.split(":"))
        local = datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(self.tz))
        # a time inside a spring-forward gap does not survive the round trip: take the gap's end
        as_utc = local.astimezone(UTC)
        if as_utc.astimezone(ZoneInfo(self.tz)).replace(tzinfo=None) != local.replace(tzinfo=None):
            as_utc = _gap_end(local)
        return as_utc

    def period_of(self, day: date) -> Period:
        """The period the firing on ``day`` delivers: the whole days before ``day`` in the schedule's zone."""
        days = CADENCES[self.cadence]
        tzinfo = ZoneInfo(self.tz)
        first = day - timedelta(days=days)
        start = datetime.combine(first, time(0), tzinfo=tzinfo).astimezone(UTC)
        end = datetime.combine(day, time(0), tzinfo=tzinfo).astimezone(UTC)
        return Period(start, end, first, days, self.fire_time(day))

    def due_period(self, now: datetime) -> Period | None:
        """The latest period whose firing time has passed at ``now`` and came after the schedule was created
        (a schedule never delivers the periods before it existed); None before its first firing."""
        today = now.astimezone(ZoneInfo(self.tz)).date()
        for back in range(0, 8):
            day = today - timedelta(days=back)
            if self.cadence == "weekly" and day.weekday() != self.weekday:
                continue
            fire = self.fire_time(day)
            if fire <= now:
                return self.period_of(day) if fire >= self.created else None
        return None

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": self.id, "dashboard": self.dashboard, "cadence": self.cadence, "at": self.at, "tz": self.tz,
            "formats": list(self.formats), "email": list(self.email_to), "webhook": self.webhook_url,
            "filter": list(self.filters), "created": format_ts(self.created, "auto"),
        }
        if self.cadence == "weekly":
            answer["weekday"] = WEEKDAYS[self.weekday]
        return answer


def _gap_end(local: datetime) -> datetime:
    """The first instant after a spring-forward gap that swallowed ``local`` (UTC)."""
    tzinfo, wall = local.tzinfo, local.replace(tzinfo=None)
    for minutes in range(1, 4 * 60):
        candidate = (wall + timedelta(minutes=minutes)).replace(tzinfo=tzinfo)
        if candidate.astimezone(UTC).astimezone(tzinfo).replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return candidate.astimezone(UTC)
    return local.astimezone(UTC)


def checked_schedule(*, schedule_id: str, tenant: str, dashboard: str, cadence: str, at: str, tz: str,
                     weekday: str | None, formats: list[str], email: list[str], webhook: str | None,
                     filters: list[str], created: datetime, email_enabled: bool) -> ReportSchedule:
    """The schedule if every part is usable; else ``ScheduleError`` naming the part and what is accepted.
    The webhook's destination is checked separately (``serving.webhook_guard``), as for alert rules."""
    if cadence not in CADENCES:
        raise ScheduleError(f"cadence {cadence!r} is not one of {', '.join(CADENCES)}")
    if not _TIME.match(at or ""):
        raise ScheduleError(f"at {at!r} is not a time like 08:00 (24-hour HH:MM in the schedule's tz)")
    try:
        zone(tz)
    except BadTimeZone as exc:
        raise ScheduleError(str(exc)) from None
    day = 0
    if cadence == "weekly":
        if (weekday or "").lower() not in WEEKDAYS:
            raise ScheduleError(f"a weekly schedule needs a weekday, one of {', '.join(WEEKDAYS)}; got {weekday!r}")
        day = WEEKDAYS.index(weekday.lower())  # type: ignore[union-attr]
    elif weekday:
        raise ScheduleError("weekday is for weekly schedules only")
    chosen = tuple(dict.fromkeys(formats))
    if not chosen or any(f not in FORMATS for f in chosen):
        raise ScheduleError(f"formats must be one or both of {', '.join(FORMATS)}; got {formats!r}")
    recipients = tuple(dict.fromkeys(e.strip() for e in email))
    if len(recipients) > MAX_RECIPIENTS:
        raise ScheduleError(f"at most {MAX_RECIPIENTS} email recipients per schedule, got {len(recipients)}")
    for address in recipients:
        if not _EMAIL.match(address):
            raise ScheduleError(f"{address!r} is not an email address like team@example.com")
    if recipients and not email_enabled:
        raise ScheduleError("email delivery is not configured on this server (LAKEHOUSE_SMTP_HOST is empty): "
                            "use a webhook, or ask the operator to set the SMTP settings")
    if not recipients and not webhook:
        raise ScheduleError("name where the report goes: `email` (a list of addresses) and/or `webhook` (a URL)")
    if webhook and not webhook.startswith(("http://", "https://")):
        raise ScheduleError(f"webhook must be an http(s) URL, got {webhook!r}")
    try:
        parse_filter_params(filters)
    except QueryError as exc:
        raise ScheduleError(str(exc)) from None
    return ReportSchedule(schedule_id, tenant, dashboard, cadence, at, tz, day, chosen, recipients, webhook or "",
                          tuple(filters), created)
