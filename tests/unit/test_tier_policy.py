"""The tier policy file: the default horizons and retention, per-tenant retention, and clear errors for bad files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from common.settings import Settings
from storage_tiers.policy import DEFAULT_POLICY_FILE, PolicyError, load_policy, parse_duration

DAY = timedelta(days=1)


def _write(tmp_path: Path, mutate) -> Settings:  # a small callback
    document = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    mutate(document)
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(document))
    return Settings(tier_policy=str(path))


def test_defaults_are_the_documented_horizons_and_retention() -> None:
    policy = load_policy(Settings(tier_policy=""))
    assert set(policy.datasets) == {"events", "rollups_1m", "rollups_hourly", "rollups_daily"}
    horizons = {name: [(t.tier, t.horizon.days) for t in d.tiers] for name, d in policy.datasets.items()}
    assert horizons == {
        "events": [("hot", 7), ("warm", 365), ("cold", 2557)],
        "rollups_1m": [("hot", 7)],
        "rollups_hourly": [("hot", 90), ("warm", 365)],
        "rollups_daily": [("cold", 2557)],
    }
    assert policy.retention_for("anyone") == 2557 * DAY
    assert policy.datasets["events"].tier("cold").compression == "zstd"
    assert policy.datasets["events"].tier("cold").location == "cold/events"


def test_tier_for_follows_the_horizons() -> None:
    policy = load_policy(Settings())
    assert policy.tier_for("events", 6 * DAY) == "hot"
    assert policy.tier_for("events", 7 * DAY) == "warm"
    assert policy.tier_for("events", 364 * DAY) == "warm"
    assert policy.tier_for("events", 365 * DAY) == "cold"
    assert policy.tier_for("events", 2557 * DAY) is None
    assert policy.tier_for("rollups_hourly", 89 * DAY) == "hot"
    assert policy.tier_for("rollups_hourly", 400 * DAY) is None  # daily rollups take over
    assert policy.tier_for("rollups_daily", 3 * DAY) == "cold"


def test_the_vacuum_window_is_part_of_the_policy(tmp_path: Path) -> None:
    assert load_policy(Settings(tier_policy="")).history_window == 7 * DAY
    assert load_policy(_write(tmp_path, lambda d: d.update(vacuum={"history": "30d"}))).history_window == 30 * DAY
    assert load_policy(_write(tmp_path, lambda d: d.pop("vacuum"))).history_window == 7 * DAY
    with pytest.raises(PolicyError, match="vacuum.*unknown key"):
        load_policy(_write(tmp_path, lambda d: d.update(vacuum={"erasure": "1d"})))


def test_per_tenant_retention(tmp_path: Path) -> None:
    settings = _write(tmp_path, lambda d: d["retention"].update(tenants={"trial": "2y", "gov": "7y"}))
    policy = load_policy(settings)
    assert policy.retention_for("trial") == 730 * DAY
    assert policy.retention_for("gov") == 2557 * DAY
    assert policy.retention_for("other") == 2557 * DAY
    assert policy.shortest_retention == 730 * DAY


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["datasets"]["events"]["tiers"][0].update(horizon="7 days"),
         r"datasets\.events\.tiers\[0\]\.horizon"),
        (lambda d: d["datasets"]["events"]["tiers"][1].update(tier="lukewarm"), r"tiers\[1\]\.tier.*accepted"),
        (lambda d: d["datasets"]["events"]["tiers"][2].update(compression="brotli"), r"compression.*accepted"),
        (lambda d: d["datasets"]["events"]["tiers"][2].update(location="elsewhere"), r"location.*cold/events"),
        (lambda d: d["datasets"]["events"]["tiers"][1].update(horizon="3d"), r"must be longer"),
        (lambda d: d["datasets"].pop("rollups_daily"), r"missing \['rollups_daily'\]"),
        (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\]"),
        (lambda d: d["retention"].update(tenants={"acme": "10y"}), r"tenants\.acme.*raise datasets"),
        (lambda d: d["datasets"]["events"]["tiers"][2].update(layout="hour"), r"layout.*\['day'\]"),
    ],
)
def test_bad_files_name_the_file_the_key_and_what_is_accepted(tmp_path: Path, mutate, message: str) -> None:
    settings = _write(tmp_path, mutate)
    with pytest.raises(PolicyError, match=message) as info:
        load_policy(settings)
    assert str(tmp_path / "tiers.yaml") in str(info.value)


def test_missing_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="LAKEHOUSE_TIER_POLICY"):
        load_policy(Settings(tier_policy=str(tmp_path / "nope.yaml")))
    (tmp_path / "bad.yaml").write_text("datasets: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(Settings(tier_policy=str(tmp_path / "bad.yaml")))


def test_durations() -> None:
    assert parse_duration("7y", "x") == 2557 * DAY
    assert parse_duration("36h", "x") == timedelta(hours=36)
    assert parse_duration("2w", "x") == 14 * DAY
    with pytest.raises(PolicyError, match="x: .*not a duration"):
        parse_duration("forever", "x")


def test_the_daily_schedule_asks_each_mover_for_the_day_that_just_became_due() -> None:
    from datetime import UTC, datetime

    import dagster as dg

    from orchestration.tiers.automation import tiers_schedule

    tick = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
    requests = list(tiers_schedule(dg.build_schedule_context(scheduled_execution_time=tick)))
    asked = sorted((r.asset_selection[0].to_user_string(), r.partition_key) for r in requests)
    assert asked == [
        ("cold_tier", "2025-11-22"),  # 366 days back: just past the warm horizon
        ("hot_tier_drop", "2026-08-24"),  # 91 days back: rollups_1h just past 90 days
        ("hot_tier_drop", "2026-11-15"),  # 8 days back: events_raw and rollups_1m just past 7 days
        ("rollups_daily", "2026-11-22"),  # yesterday, complete
    ]
