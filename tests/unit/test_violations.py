"""The retention rules of the audit, on hand-made inventories (pure logic, no services).

The policy is built here with the policy module's own classes and the packaged defaults (events hot
7 d / warm 365 d / cold 7 y, rollups_1m hot 7 d, rollups_hourly hot 90 d / warm 365 d, rollups_daily
cold 7 y, retention 7 y = 2,557 days), so the rules are tested against fixed numbers whatever the
packaged file says; grace periods are the defaults (1 day for moves and purges, 3 h for copies) unless
a test sets them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from storage_tiers.compliance.holds import LegalHold
from storage_tiers.compliance.inventory import DAY, HOUR, Inventory, PartitionInfo, TierInventory
from storage_tiers.compliance.violations import KINDS, Rules, find_violations, parse_partition
from storage_tiers.policy import DatasetPolicy, TierPolicy, TierSpec

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
GRAINS = {"hot": "hour", "warm": "hour", "cold": "day"}
DAILY = {("rollups_daily", "cold"), ("events", "cold")}


TIERS = {
    "events": [("hot", 7, "events_raw", "hour"), ("warm", 365, "archive/events", "hour"),
               ("cold", 2557, "cold/events", "day")],
    "rollups_1m": [("hot", 7, "rollups_1m", "hour")],
    "rollups_hourly": [("hot", 90, "rollups_1h", "hour"), ("warm", 365, "warm/rollups_hourly", "hour")],
    "rollups_daily": [("cold", 2557, "cold/rollups_daily", "day")],
}


def make_policy() -> TierPolicy:
    datasets = {
        name: DatasetPolicy(name, [TierSpec(t, timedelta(days=d), loc, layout, "zstd") for t, d, loc, layout in tiers])
        for name, tiers in TIERS.items()
    }
    return TierPolicy("test", datasets, timedelta(days=2557), {}, {"lakehouse-tier": "cold"})


@pytest.fixture(scope="module")
def policy() -> TierPolicy:
    return make_policy()


def hour(hours_ago: int) -> datetime:
    """Start of the hour that began ``hours_ago`` hours before the current one."""
    return NOW.replace(minute=0) - timedelta(hours=hours_ago)


def day(days_ago: int) -> datetime:
    return NOW.replace(hour=0, minute=0) - timedelta(days=days_ago)


def part(start: datetime, grain: timedelta = HOUR, rows: int = 10, **kw: object) -> PartitionInfo:
    return PartitionInfo(start=start, end=start + grain, rows=rows, bytes=rows * 100, files=1,
                         min_event_time=start, max_event_time=start + grain - timedelta(seconds=1), **kw)


def inventory(**tiers: list[PartitionInfo]) -> Inventory:
    """``inventory(events_hot=[...], events_warm=[...])``; every other dataset × tier is empty."""
    out = []
    for dataset, names in [("events", ("hot", "warm", "cold")), ("rollups_1m", ("hot",)),
                           ("rollups_hourly", ("hot", "warm")), ("rollups_daily", ("cold",))]:
        for tier in names:
            grain = "day" if (dataset, tier) in DAILY else "hour"
            out.append(TierInventory(dataset, tier, f"{dataset}/{tier}", grain, tiers.get(f"{dataset}_{tier}", [])))
    return Inventory(collected_at=NOW, lake_uri="/lake", tiers=out)


def kinds(findings, kind: str) -> list:
    return [v for v in findings.violations if v.kind == kind]


def hot_and_warm(hours: range, rows: int = 10) -> dict[str, list[PartitionInfo]]:
    """Events and their rollups, complete and consistent in hot and warm for ``hours`` (hours ago)."""
    starts = sorted(hour(h) for h in hours)
    return {
        "events_hot": [part(s, rows=rows) for s in starts],
        "events_warm": [part(s, rows=rows) for s in starts],
        "rollups_1m_hot": [part(s) for s in starts],
        "rollups_hourly_hot": [part(s) for s in starts],
        "rollups_hourly_warm": [part(s) for s in starts],
    }


# ------------------------------------------------------------------------------------------ clean


def test_a_consistent_lake_has_no_violation(policy: TierPolicy) -> None:
    findings = find_violations(inventory(**hot_and_warm(range(3, 48))), policy, now=NOW)
    assert findings.violations == [] and findings.ok
    assert findings.counts() == dict.fromkeys(KINDS, 0)


def test_an_empty_lake_has_no_violation(policy: TierPolicy) -> None:
    assert find_violations(inventory(), policy, now=NOW).ok


# -------------------------------------------------------------------------------- past retention


def test_cold_day_past_retention_is_a_violation_after_the_purge_grace(policy: TierPolicy) -> None:
    # age = now - end of the day; retention 2557 d + 1 d grace
    too_old = day(2557 + 1 + 2)  # end is 2557+2 days ago → past retention + grace
    borderline = day(2557 + 1)  # end is 2557 days ago: exactly the retention, not past it
    findings = find_violations(inventory(events_cold=[part(too_old, DAY), part(borderline, DAY)]), policy, now=NOW)
    past = kinds(findings, "past_retention")
    assert [(v.dataset, v.tier, v.start) for v in past] == [("events", "cold", too_old)]
    assert past[0].rows == 10 and "2557 days" in past[0].detail


def test_consecutive_partitions_past_retention_are_one_range(policy: TierPolicy) -> None:
    days = [day(2600 + i) for i in range(5)]
    findings = find_violations(inventory(rollups_daily_cold=[part(d, DAY) for d in days]), policy, now=NOW)
    [v] = kinds(findings, "past_retention")
    assert (v.start, v.end, v.partitions, v.rows) == (min(days), max(days) + DAY, 5, 50)
    assert findings.counts()["past_retention"] == 5


def test_a_legal_hold_keeps_past_retention_data_out_of_the_violations(policy: TierPolicy) -> None:
    held_day, free_day = day(2600), day(2602)
    hold = LegalHold("hold-1", "acme", held_day.date(), held_day.date(), "case 42", "", "")
    inv = inventory(events_cold=[part(held_day, DAY), part(free_day, DAY)])
    findings = find_violations(inv, policy, holds=[hold], now=NOW)
    assert [v.start for v in kinds(findings, "past_retention")] == [free_day]
    assert [(h.dataset, h.tier, h.start, h.holds) for h in findings.held] == [("events", "cold", held_day, ("hold-1",))]


def test_a_hold_of_a_tenant_the_partition_cannot_hold_does_not_protect_it(policy: TierPolicy) -> None:
    old = day(2600)
    hold = LegalHold("hold-1", "zeta", old.date(), old.date(), "case", "", "")
    inv = inventory(events_cold=[part(old, DAY, tenant_ranges=(("acme", "beta"),))])
    findings = find_violations(inv, policy, holds=[hold], now=NOW)
    assert len(kinds(findings, "past_retention")) == 1 and findings.held == []


def test_a_tenant_with_a_shorter_retention_makes_its_partitions_past_retention(policy: TierPolicy) -> None:
    short = dataclasses.replace(policy, tenant_retention={"trial": timedelta(days=30)})
    with_trial = part(day(40), DAY, tenant_ranges=(("acme", "acme"), ("beta", "zulu")))  # "trial" in beta..zulu
    without = part(day(41), DAY, tenant_ranges=(("acme", "acme"),))
    unknown = part(day(42), DAY)  # no tenant information: every tenant may be in it
    findings = find_violations(inventory(rollups_daily_cold=[with_trial, without, unknown]), short, now=NOW)
    past = kinds(findings, "past_retention")
    assert sorted(v.start for v in past) == [day(42), day(40)]
    assert all("tenant trial's retention of 30 days" in v.detail for v in past)


# ------------------------------------------------------------------------------------- wrong tier


def test_hot_partition_older_than_hot_horizon_is_in_the_wrong_tier(policy: TierPolicy) -> None:
    data = hot_and_warm(range(3, 10))
    stale = hour(24 * 9)  # 9 days: past 7 d + 1 d grace
    recent_enough = hour(24 * 7 + 12)  # 7.5 days: within the grace
    for s in (stale, recent_enough):
        data["events_hot"].append(part(s))
        data["events_warm"].append(part(s))
    findings = find_violations(inventory(**data), policy, now=NOW)
    wrong = kinds(findings, "wrong_tier")
    assert [(v.code, v.dataset, v.tier, v.start) for v in wrong] == [("not_moved", "events", "hot", stale)]
    assert "should have moved to warm" in wrong[0].detail


def test_warm_data_older_than_the_warm_horizon_not_yet_moved(policy: TierPolicy) -> None:
    old = hour(24 * 400)
    findings = find_violations(inventory(events_warm=[part(old)], events_cold=[part(day(400), DAY)]), policy, now=NOW)
    wrong = kinds(findings, "wrong_tier")
    assert [(v.code, v.tier, v.start) for v in wrong] == [("not_moved", "warm", old)]


def test_the_last_tier_past_its_horizon_is_past_retention_not_wrong_tier(policy: TierPolicy) -> None:
    findings = find_violations(inventory(events_cold=[part(day(2600), DAY)]), policy, now=NOW)
    assert kinds(findings, "wrong_tier") == [] and len(kinds(findings, "past_retention")) == 1


def test_cold_data_moved_before_the_warm_horizon_and_gone_from_warm(policy: TierPolicy) -> None:
    early = day(100)
    copied = day(101)  # still in warm too: a copy in progress, fine
    warm = [part(copied + timedelta(hours=h)) for h in range(24)]
    findings = find_violations(inventory(events_cold=[part(early, DAY), part(copied, DAY)], events_warm=warm),
                               policy, now=NOW)
    wrong = kinds(findings, "wrong_tier")
    assert [(v.code, v.start) for v in wrong] == [("moved_early", early)]


def test_cold_objects_without_the_cold_tag(policy: TierPolicy) -> None:
    inv = inventory(rollups_daily_cold=[part(day(500), DAY, untagged_files=1), part(day(501), DAY)])
    findings = find_violations(inv, policy, now=NOW, cold_tags={"lakehouse-tier": "cold"})
    wrong = kinds(findings, "wrong_tier")
    assert [(v.code, v.start) for v in wrong] == [("unmarked", day(500))]
    assert "lakehouse-tier=cold" in wrong[0].detail


# ------------------------------------------------------------------------------ hot without warm


def test_hot_hours_without_warm_copy_after_the_copy_grace(policy: TierPolicy) -> None:
    data = hot_and_warm(range(3, 12))
    missing = [hour(5), hour(6)]
    data["events_warm"] = [p for p in data["events_warm"] if p.start not in missing]
    data["events_hot"] += [part(hour(0)), part(hour(1))]  # still filling / within the 3 h grace: not judged
    data["rollups_1m_hot"] += [part(hour(0)), part(hour(1))]
    data["rollups_hourly_hot"] += [part(hour(0)), part(hour(1))]
    findings = find_violations(inventory(**data), policy, now=NOW)
    [v] = kinds(findings, "hot_without_warm")
    assert (v.code, v.dataset, v.start, v.end, v.partitions) == ("missing", "events", hour(6), hour(4), 2)
    assert kinds(findings, "gap") == []  # the hours are in hot: not a gap


def test_warm_copy_with_fewer_rows_than_hot_is_incomplete(policy: TierPolicy) -> None:
    data = hot_and_warm(range(3, 6))
    data["events_warm"] = [part(p.start, rows=p.rows - (1 if p.start == hour(4) else 0)) for p in data["events_warm"]]
    findings = find_violations(inventory(**data), policy, now=NOW)
    [v] = kinds(findings, "hot_without_warm")
    assert (v.code, v.start) == ("incomplete", hour(4))


def test_a_cold_day_counts_as_the_copy_of_hot_hours(policy: TierPolicy) -> None:
    # odd but legal: the warm hours already moved on; the data is not lost, so no hot_without_warm
    d = day(3)
    hot = [part(d + timedelta(hours=h)) for h in range(24)]
    findings = find_violations(inventory(events_hot=hot, events_cold=[part(d, DAY, rows=240)]), policy, now=NOW)
    assert kinds(findings, "hot_without_warm") == []


def test_rollup_hourly_hot_without_warm(policy: TierPolicy) -> None:
    data = hot_and_warm(range(3, 8))
    data["rollups_hourly_warm"] = [p for p in data["rollups_hourly_warm"] if p.start != hour(4)]
    findings = find_violations(inventory(**data), policy, now=NOW)
    assert [(v.dataset, v.start) for v in kinds(findings, "hot_without_warm")] == [("rollups_hourly", hour(4))]


# ------------------------------------------------------------------------------------------ gaps


def test_an_hour_missing_in_every_tier_between_present_hours_is_a_gap(policy: TierPolicy) -> None:
    data = hot_and_warm(range(3, 30))
    lost = {hour(10), hour(11), hour(12)}
    for key in data:
        data[key] = [p for p in data[key] if p.start not in lost]
    findings = find_violations(inventory(**data), policy, now=NOW)
    gaps = kinds(findings, "gap")
    # events: the coverage gap; rollups: not expected, since the events of those hours are unknown
    assert [(v.dataset, v.start, v.end, v.partitions, v.code) for v in gaps] == [
        ("events", hour(12), hour(9), 3, "coverage")]
    assert findings.counts()["gap"] == 3


def test_rollups_missing_where_events_have_rows_is_a_gap(policy: TierPolicy) -> None:
    data = hot_and_warm(range(3, 30))
    data["rollups_hourly_hot"] = [p for p in data["rollups_hourly_hot"] if p.start != hour(20)]
    data["rollups_hourly_warm"] = [p for p in data["rollups_hourly_warm"] if p.start != hour(20)]
    findings = find_violations(inventory(**data), policy, now=NOW)
    assert [(v.dataset, v.start) for v in kinds(findings, "gap")] == [("rollups_hourly", hour(20))]


def test_rollups_of_an_hour_without_events_are_not_expected(policy: TierPolicy) -> None:
    data = hot_and_warm(range(3, 30))
    quiet = hour(20)
    data["events_hot"] = [p for p in data["events_hot"] if p.start != quiet]  # hot: no partition without rows
    data["events_warm"] = [part(p.start, rows=0) if p.start == quiet else p for p in data["events_warm"]]  # empty
    for key in ("rollups_1m_hot", "rollups_hourly_hot", "rollups_hourly_warm"):
        data[key] = [p for p in data[key] if p.start != quiet]
    assert find_violations(inventory(**data), policy, now=NOW).ok


def test_units_past_retention_or_too_recent_are_never_gaps(policy: TierPolicy) -> None:
    # two cold days far apart, beyond retention: the days between are not "inside retention"
    old = [part(day(2600), DAY), part(day(2590), DAY)]
    findings = find_violations(inventory(events_cold=old), policy, now=NOW)
    assert kinds(findings, "gap") == [] and len(kinds(findings, "past_retention")) == 2
    hot = [part(hour(h)) for h in (0, 2)]  # hour 1 missing, but it ended less than the copy grace ago
    findings = find_violations(inventory(events_hot=hot), policy, now=NOW, rules=Rules(copy_grace=timedelta(hours=3)))
    assert kinds(findings, "gap") == []
    findings = find_violations(inventory(events_hot=hot), policy, now=NOW, rules=Rules(copy_grace=timedelta(0)))
    assert [(v.start, v.partitions) for v in kinds(findings, "gap")] == [(hour(1), 1)]


def test_gap_between_cold_days_and_warm_hours_is_measured_in_hours(policy: TierPolicy) -> None:
    cold = [part(day(500), DAY)]
    warm = [part(day(498) + timedelta(hours=h)) for h in range(24)]  # day(499) entirely missing
    findings = find_violations(inventory(events_cold=cold, events_warm=warm), policy, now=NOW,
                               rules=Rules(move_grace=timedelta(days=400)))
    [gap] = kinds(findings, "gap")
    assert (gap.start, gap.end, gap.partitions) == (day(499), day(498), 24)


def test_a_partition_the_audit_log_wrote_but_no_tier_holds_is_a_gap(policy: TierPolicy) -> None:
    lost = day(400)
    records = [
        {"seq": 1, "action": "compact_cold", "dataset": "rollups_daily", "partition": f"dt={lost:%Y-%m-%d}",
         "tier_from": "warm", "tier_to": "cold", "at": "2026-01-01T00:00:00Z"},
        {"seq": 2, "action": "compact_cold", "dataset": "rollups_daily", "partition": f"dt={day(401):%Y-%m-%d}",
         "tier_from": "warm", "tier_to": "cold"},
        {"seq": 3, "action": "purge", "dataset": "rollups_daily", "partition": f"dt={day(401):%Y-%m-%d}",
         "tier_from": "cold"},
    ]
    findings = find_violations(inventory(), policy, now=NOW, audit_records=records)
    [gap] = kinds(findings, "gap")
    assert (gap.dataset, gap.start, gap.end, gap.code) == ("rollups_daily", lost, lost + DAY, "audit_log")
    assert "seq 1" in gap.detail


def test_purged_per_the_log_but_still_present(policy: TierPolicy) -> None:
    d = day(2600)
    records = [{"seq": 7, "action": "purge", "dataset": "events", "partition": f"dt={d:%Y-%m-%d}",
                "tier_from": "cold", "at": "2026-11-22T03:00:00Z"}]
    hold = LegalHold("h", "acme", d.date(), d.date(), "case", "", "")  # held: not past retention, but still purged
    findings = find_violations(inventory(events_cold=[part(d, DAY)]), policy, holds=[hold], now=NOW,
                               audit_records=records)
    [v] = kinds(findings, "purged_but_present")
    assert (v.dataset, v.tier, v.start) == ("events", "cold", d) and "seq 7" in v.detail


# ------------------------------------------------------------------------------ incomplete, log


def test_an_unreadable_tier_and_an_altered_log_are_violations(policy: TierPolicy) -> None:
    inv = inventory()
    inv.get("events", "hot").error = "the hot node is not reachable"
    findings = find_violations(inv, policy, now=NOW, audit_problems=["record 000000000003: hash mismatch"])
    assert findings.counts()["inventory_incomplete"] == 1 and findings.counts()["audit_log_altered"] == 1
    assert not findings.ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dt=2026-11-23/hour=10", (datetime(2026, 11, 23, 10, tzinfo=UTC), HOUR)),
        ("dt=2026-11-23", (datetime(2026, 11, 23, tzinfo=UTC), DAY)),
        ("2026-11-23-10:00", (datetime(2026, 11, 23, 10, tzinfo=UTC), HOUR)),
        ("2026-11-23T10:00", (datetime(2026, 11, 23, 10, tzinfo=UTC), HOUR)),
        ("tenant=acme/dt=2026-11-01..2026-11-03", None),
        ("nonsense", None),
    ],
)
def test_partition_names(text: str, expected: object) -> None:
    assert parse_partition(text) == expected


def test_dates_are_utc_days() -> None:
    assert day(0).date() == date(2026, 11, 23)


def test_a_move_out_of_the_dataset_expects_nothing(policy: TierPolicy) -> None:
    # the movers fold warm hourly rollups into cold daily rollups and log it as a move of rollups_hourly to cold
    h = hour(24 * 400)
    records = [{"seq": 1, "action": "move", "dataset": "rollups_hourly", "partition": f"dt={h:%Y-%m-%d}/hour={h:%H}",
                "tier_from": "warm", "tier_to": "cold"}]
    assert find_violations(inventory(), policy, now=NOW, audit_records=records).ok
