"""Report schedules: which period a firing delivers, when it fires across DST, and what is refused."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from serving.reports.schedules import ReportSchedule, ScheduleError, checked_schedule

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def schedule(**changes: object) -> ReportSchedule:
    base = {"schedule_id": "rs-1", "tenant": "acme", "dashboard": "overview", "cadence": "daily", "at": "08:00",
            "tz": "Europe/Paris", "weekday": None, "formats": ["pdf", "csv"], "email": ["team@example.com"],
            "webhook": None, "filters": [], "created": CREATED, "email_enabled": True}
    return checked_schedule(**{**base, **changes})  # type: ignore[arg-type]


def test_a_daily_report_at_8_in_paris_delivers_the_previous_paris_day():
    s = schedule()
    period = s.due_period(datetime(2026, 11, 26, 7, 30, tzinfo=UTC))  # 08:30 in Paris (UTC+1)
    assert period is not None and period.key == "2026-11-25/1d"
    assert period.start == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert period.due_at == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def test_before_todays_time_the_due_period_is_the_one_before():
    period = schedule().due_period(datetime(2026, 11, 26, 6, 59, tzinfo=UTC))  # 07:59 in Paris
    assert period is not None and period.key == "2026-11-24/1d"


def test_a_weekly_report_covers_the_seven_days_before_its_weekday():
    s = schedule(cadence="weekly", weekday="monday", tz="UTC")
    period = s.due_period(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))  # a Thursday: last Monday's firing
    assert period is not None and period.key == "2026-11-16/7d"
    assert (period.start, period.end) == (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))


def test_the_period_of_a_dst_day_has_its_true_length():
    s = schedule(tz="Europe/Paris")
    period = s.period_of(date(2026, 3, 30))  # 29 March 2026: clocks go forward, a 23-hour day
    assert (period.end - period.start).total_seconds() == 23 * 3600


def test_a_time_inside_the_spring_forward_gap_fires_when_the_gap_ends():
    s = schedule(tz="Europe/Paris", at="02:30")
    assert s.fire_time(date(2026, 3, 29)) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST


def test_a_schedule_never_delivers_periods_from_before_it_existed():
    s = schedule(created=datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    assert s.due_period(datetime(2026, 11, 26, 10, 0, tzinfo=UTC)) is None
    assert s.due_period(datetime(2026, 11, 27, 7, 0, tzinfo=UTC)).key == "2026-11-26/1d"  # type: ignore[union-attr]


@pytest.mark.parametrize(("changes", "message"), [
    ({"cadence": "hourly"}, "cadence"),
    ({"at": "8am"}, "HH:MM"),
    ({"at": "24:00"}, "HH:MM"),
    ({"tz": "Mars/Olympus"}, "Mars/Olympus"),
    ({"cadence": "weekly"}, "weekday"),
    ({"weekday": "monday"}, "weekly schedules only"),
    ({"formats": ["xls"]}, "formats"),
    ({"email": ["not-an-address"]}, "not an email"),
    ({"email": ["a@example.com, b@example.com"]}, "not an email"),
    ({"email": ["x@example.com\r\nBcc: y@example.com"]}, "not an email"),
    ({"email": [], "webhook": None}, "where the report goes"),
    ({"email": [], "webhook": "ftp://example.com/x"}, "http(s)"),
    ({"email_enabled": False}, "LAKEHOUSE_SMTP_HOST"),
    ({"filters": ["country"]}, "dimension:value"),
])
def test_a_schedule_that_cannot_work_is_refused_with_what_to_change(changes, message):
    with pytest.raises(ScheduleError, match=message if message != "http(s)" else r"http\(s\)"):
        schedule(**changes)
