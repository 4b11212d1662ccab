"""A purged tenant's hour stays purged when the hour is archived and restated again (a late event, a backfill).

The stream lands every event in the landing zone, and the batch layer rebuilds an hour from there
whenever a late file arrives (the late-landing sensor's run: archive, recompute, restate). A purge that
deleted a tenant's rows from the archive, the warm rollups and the hot tier would see them come back
with the next late event of that hour. Here a real hot node (chDB behind Arrow Flight) and a local lake
go through: landing → archive → recompute → restate; the retention purge (the Dagster asset); a late
event of both tenants landed into the purged hour; the hour archived, recomputed and restated again; a
second purge. Ground truth is the generator's own count of distinct events; every tier and the landing
files are read back directly (pyarrow, SQL on the hot tier).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from batch.archive import archived_hour
from common.erasures import read_erasures
from common.lake import lake_filesystem, landing_files_by_hour
from common.settings import Settings
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.policy import DEFAULT_POLICY_FILE
from tests.integration.own_services import free_pair
from tests.integration.test_tiers_retention import (
    History,
    _settings,
    batch_hours_with_duckdb,
    hot_contents,
    hot_node,
    lake_contents,
    land_directly,
    purge,
)

pytestmark = pytest.mark.integration


def landing_rows(settings: Settings) -> Counter:
    """(hour, tenant) → rows in the committed landing files, read straight from storage."""
    fs = lake_filesystem(settings)
    out: Counter = Counter()
    for hour, files in landing_files_by_hour(settings, fs).items():
        for path in files:
            for tenant in pq.read_table(path, columns=["tenant"], filesystem=fs)["tenant"].to_pylist():
                out[(hour, tenant)] += 1
    return out


def landed(history: History) -> Counter:
    """(hour, tenant) → landing rows the generator sent, resent duplicates included (the archive keeps one)."""
    out: Counter = Counter()
    for record in history.records:
        event = json.loads(record["value"])
        at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        out[(at.replace(minute=0, second=0, microsecond=0), event["tenant"])] += 1
    return out


def tenants_of(counts: dict[str, Counter], hour: datetime) -> dict[str, dict[str, int]]:
    """Per dataset and tier, the tenants' counts of ``hour``."""
    return {name: {t: n for (h, t), n in sorted(c.items()) if h == hour and n} for name, c in counts.items()}


def test_a_late_event_into_a_purged_hour_does_not_bring_the_purged_rows_back(tmp_path: Path) -> None:
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["retention"]["tenants"] = {"trial": "10d"}  # the trial tenant's 20-day-old hour is past retention
    policy_file = tmp_path / "tiers.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    settings = _settings(tmp_path / "home", "", free_pair(), policy_file)
    history = History(settings, random.Random(11))
    hour = history.add(20, 14, "beta", 6)
    history.add(20, 14, "trial", 5)
    history.add(2, 10, "trial", 4)  # inside retention: stays
    recent = history.hours[-1]
    with hot_node(settings, minio=False) as store:
        land_directly(settings, history)
        batch_hours_with_duckdb(settings, store, history.hours)
        before = tenants_of({**lake_contents(settings), **hot_contents(store)}, hour)
        assert before["warm events"] == {"beta": 6, "trial": 5}
        assert before["hot events_raw"] == {"beta": 6, "trial": 5}

        purge(settings)
        assert read_erasures(settings) == {"trial": [(hour, hour + timedelta(hours=1))]}
        sent = landed(history)
        assert {t: n for (h, t), n in landing_rows(settings).items() if h == hour} == {"beta": sent[(hour, "beta")]}

        # A late event of each tenant lands in the purged hour (a new file in the stream's commit log), and the
        # hour goes through the batch layer again, as the late-landing sensor's run does.
        late = History(settings, random.Random(12))
        late.add(20, 14, "beta", 1)
        late.add(20, 14, "trial", 1)
        land_directly(settings, late, batch=1)
        batch_hours_with_duckdb(settings, store, [hour])

        after = {**lake_contents(settings), **hot_contents(store)}
        seen = tenants_of(after, hour)
        for name in ("warm events", "warm hourly rollups", "hot events_raw", "hot rollups_1m", "hot rollups_1h"):
            assert seen[name] == {"beta": 6 + late.truth[(hour, "beta")]}, (name, seen[name])
        assert after["warm events"][(recent, "trial")] == 4  # the trial tenant's data inside retention is kept
        provenance = archived_hour(settings, hour).provenance  # type: ignore[union-attr]
        assert provenance["erased_tenants"] == ["trial"]
        late_sent = landed(late)
        assert provenance["rows_erased"] == late_sent[(hour, "trial")]  # the landing had lost the first 5 already

        # The late trial row sits in the landing until the next purge, which rewrites its file too.
        assert landing_rows(settings)[(hour, "trial")] == late_sent[(hour, "trial")]
        purge(settings)
        landing = landing_rows(settings)
        assert landing[(hour, "trial")] == 0
        assert landing[(hour, "beta")] == sent[(hour, "beta")] + late_sent[(hour, "beta")]
        assert landing[(recent, "trial")] == sent[(recent, "trial")]
        scrubs = [r for r in AuditLog(settings).records() if r["action"] == "purge" and r["tier_from"] == "landing"]
        assert [(r["partition"], r["details"]["tenants"], r["rows"]) for r in scrubs] == [
            ("dt=" + hour.strftime("%Y-%m-%d") + "/hour=14", ["trial"], sent[(hour, "trial")]),
            ("dt=" + hour.strftime("%Y-%m-%d") + "/hour=14", ["trial"], late_sent[(hour, "trial")])]
