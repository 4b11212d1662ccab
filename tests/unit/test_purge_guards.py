"""The purge refuses to start when it must not delete: a future as_of, an altered audit log, an unreadable
hold, a plan touching too much of the lake; and it never touches a cold day still in the old folder layout (not
migrated: not in the table). A real local lake (the cold events' Delta table on disk), no hot tier."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from common.events import EVENT_ARROW_SCHEMA
from common.lake import cold_events_path
from common.lake_tables import COLD_EVENTS_TABLE
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog, canonical
from storage_tiers.compliance.holds import HoldError, active_holds, place_hold
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import EVENTS_SORT, publish_day, published
from storage_tiers.tiers.purge import Purger, PurgeRefused

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
OLD = [date(2019, 1, 1) + timedelta(days=i) for i in range(3)]  # past the 7-year retention on NOW
RECENT = [date(2026, 11, 1) + timedelta(days=i) for i in range(7)]


class ColdDayRef:
    """A day of the cold events table; ``exists()``: whether the table still holds rows of it."""

    def __init__(self, settings: Settings, day: date) -> None:
        self.settings, self.day = settings, day

    def exists(self) -> bool:
        return published(self.settings, COLD_EVENTS_TABLE, self.day) is not None


def lay_day(settings: Settings, day: date) -> ColdDayRef:
    start = datetime(day.year, day.month, day.day, 5, tzinfo=UTC)
    rows = pa.Table.from_pylist([
        {"tenant": "acme", "event": "view", "timestamp": start + timedelta(minutes=i), "event_id": f"{day}-{i}",
         "user_id": "u", "page": "/", "country": "FR", "device": "web", "revenue": 0.0, "properties": "{}",
         "received_at": start} for i in range(10)], schema=EVENT_ARROW_SCHEMA)
    publish_day(settings, COLD_EVENTS_TABLE, day, rows, EVENTS_SORT, [], {}, None)
    return ColdDayRef(settings, day)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, lake_uri="", purge_max_share=0.5)


def purger(settings: Settings, as_of: datetime = NOW) -> Purger:
    return Purger(settings, load_policy(settings), AuditLog(settings), as_of, run_id="test")


def test_a_normal_purge_deletes_the_expired_days_only(settings: Settings) -> None:
    folders = {d: lay_day(settings, d) for d in OLD + RECENT}
    report = purger(settings).run(now=NOW)
    assert sorted(i.partition for i in report.items) == [f"dt={d}" for d in OLD]
    assert [d for d, f in folders.items() if f.exists()] == RECENT
    assert report.share == pytest.approx(3 / 10)
    assert AuditLog(settings).verify().ok


def test_an_as_of_in_the_future_is_refused_before_anything_is_deleted(settings: Settings) -> None:
    folders = [lay_day(settings, d) for d in OLD + RECENT]
    with pytest.raises(PurgeRefused, match="in the future"):
        purger(settings, NOW + timedelta(days=3000)).run(now=NOW)
    assert all(f.exists() for f in folders)


def test_a_purge_touching_more_than_the_share_needs_a_confirmation(settings: Settings) -> None:
    folders = [lay_day(settings, d) for d in OLD + RECENT[:2]]  # 3 of 5 days expired: 60 % > 50 %
    with pytest.raises(PurgeRefused, match="3 of the lake's 5 days.*LAKEHOUSE_PURGE_MAX_SHARE"):
        purger(settings).run(now=NOW)
    assert all(f.exists() for f in folders)
    assert len(purger(settings).run(dry_run=True, now=NOW).items) == 3  # a dry run shows the plan
    report = purger(settings).run(confirm_large=True, now=NOW)
    assert len(report.items) == 3 and [f.exists() for f in folders] == [False] * 3 + [True] * 2


def test_an_altered_audit_log_stops_the_purge_before_deleting(settings: Settings) -> None:
    folders = [lay_day(settings, d) for d in OLD + RECENT]
    log = AuditLog(settings)
    log.append("move", "events", partition="dt=2026-11-01", tier_from="hot", tier_to="warm", rows=5)
    log.append("move", "events", partition="dt=2026-11-02", tier_from="hot", tier_to="warm", rows=5)
    first = Path(log.location) / f"{1:012d}.json"
    os.chmod(first, 0o644)
    first.write_text(first.read_text().replace('"rows":5', '"rows":6'))
    with pytest.raises(PurgeRefused, match="audit log does not verify.*record 000000000001"):
        purger(settings).run(now=NOW)
    assert all(f.exists() for f in folders)


def test_an_unreadable_hold_record_stops_the_purge(settings: Settings) -> None:
    folders = [lay_day(settings, d) for d in OLD + RECENT]
    log = AuditLog(settings)
    place_hold(log, "acme", str(OLD[0]), str(OLD[-1]), "case 1")
    record_file = Path(log.location) / f"{1:012d}.json"
    os.chmod(record_file, 0o644)
    record_file.write_text(record_file.read_text()[:40])  # truncated: not JSON any more
    with pytest.raises(HoldError, match="not valid JSON"):
        active_holds(log)  # the holds are never read from a partial log
    with pytest.raises(PurgeRefused):
        purger(settings).run(now=NOW)
    assert all(f.exists() for f in folders)


def test_a_hold_record_missing_its_dates_is_an_error_not_a_skip(settings: Settings) -> None:
    log = AuditLog(settings)
    place_hold(log, "acme", str(OLD[0]), str(OLD[-1]), "case 1")
    path = Path(log.location) / f"{1:012d}.json"
    os.chmod(path, 0o644)
    record = json.loads(path.read_text())
    del record["details"]["start"]
    record["hash"] = log.hash_of(record)  # a consistent record (even signed), still unusable
    path.write_text(canonical(record).decode())
    (Path(log.location).parent / "head.json").write_text(json.dumps({"seq": 1, "hash": record["hash"]}))
    with pytest.raises(HoldError, match="unreadable"):
        active_holds(log)


def test_a_cold_day_still_in_the_old_folder_layout_is_never_deleted(settings: Settings) -> None:
    blind = Path(cold_events_path(settings)) / f"dt={OLD[0]}"
    blind.mkdir(parents=True)
    (blind / "part-0.parquet").write_bytes(b"PAR1 stand-in")  # not migrated: `lakehouse lake migrate` first
    for day in OLD[1:] + RECENT:
        lay_day(settings, day)
    report = purger(settings).run(now=NOW)
    assert (blind / "part-0.parquet").exists()
    assert sorted(i.partition for i in report.items) == [f"dt={d}" for d in OLD[1:]]
