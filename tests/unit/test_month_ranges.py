"""Which months a total reads from the month sketches, and which days from the day rows (pure logic, checked against
day-by-day enumeration)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from storage_tiers.tiers.month_sketches import day_ranges_outside, whole_months


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_whole_months_are_those_whose_every_day_is_in_the_range_and_the_rest_is_covered_once():
    rng = random.Random(16)
    for _ in range(400):
        start = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 3 * 365 * 1440))
        start = start if rng.random() < 0.5 else start.replace(hour=0, minute=0)
        end = start + timedelta(minutes=rng.randint(1, 400 * 1440))
        end = end if rng.random() < 0.5 else end.replace(hour=0, minute=0) + timedelta(days=1)
        months = whole_months(start, end)
        # a month is whole when each of its days' midnights is in [start, end)
        first, last = start.date(), (end - timedelta(microseconds=1)).date()
        every = [first + timedelta(days=k) for k in range((last - first).days + 1)]
        by_month: dict[str, list[date]] = {}
        for day in every:
            by_month.setdefault(f"{day:%Y-%m}", []).append(day)
        truth = [m for m, days in by_month.items()
                 if len(days) == (date(int(m[:4]) + int(m[5:]) // 12, int(m[5:]) % 12 + 1, 1)
                                  - date(int(m[:4]), int(m[5:]), 1)).days
                 and all(start <= _midnight(d) < end for d in days)]
        assert months == truth, (start, end)
        outside = [lo + timedelta(days=k) for lo, hi in day_ranges_outside(start, end, months)
                   for k in range((hi - lo).days + 1)]
        assert sorted(outside + [d for d in every if f"{d:%Y-%m}" in months]) == every, (start, end)
        assert len(set(outside)) == len(outside)
