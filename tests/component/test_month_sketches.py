"""Totals read complete months from their merged month sketches and answer as the day rows do (temporary lake).

The lake of ``test_day_sketch_months`` (two tenants' synthetic events on days over three months, daily rollups,
day sketches compacted by month). The truth is computed from the events, and every answer read with the month
sketches must equal the one read from the day rows alone (the same rows and bounds: events and revenue exact, the
merged sketches the same bytes): over whole months and over ranges starting or ending inside a month; after a
purge of a tenant in a compacted month (a held tenant kept), which merges the months again without the purged
tenant; and after a day of a merged month changed, which is never read from the month's older merge.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from common.lake_tables import COLD_ROLLUPS_DAILY_TABLE, DAY_SKETCHES_TABLE, MONTH_SKETCHES_TABLE, open_table
from common.settings import Settings
from common.sketches import relative_error_bound
from serving.query.engine import QueryEngine
from serving.query.spec import QuerySpec
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.compliance.holds import place_hold
from storage_tiers.compliance.table_history import verify_tables
from storage_tiers.lake.reader import LakeRollupReader
from storage_tiers.policy import load_policy
from storage_tiers.tiers.cold_files import ROLLUP_KEYS, publish_day
from storage_tiers.tiers.day_sketches import PRECISIONS, build_day_sketches, compact_months
from storage_tiers.tiers.month_sketches import current_months, merge_months
from storage_tiers.tiers.purge import Purger
from tests.component import test_day_sketch_months as months_lake
from tests.component.test_day_sketch_months import DAYS, LAKE_ONLY, NOW, SHAPES, START, _build_all, _truth
from tests.component.test_day_sketches import _daily_rollups, _events

template, lake = months_lake.template, months_lake.lake  # the same lake's fixtures
MONTHS = {"2018-01", "2018-02", "2018-03"}
RANGES = {
    "whole months": (START, NOW),
    "from inside January": (datetime(2018, 1, 10, tzinfo=UTC), NOW),
    "February only": (datetime(2018, 2, 1, tzinfo=UTC), datetime(2018, 3, 1, tzinfo=UTC)),
    "into March": (datetime(2018, 1, 1, tzinfo=UTC), datetime(2018, 3, 14, tzinfo=UTC)),
}


class CountingReader(LakeRollupReader):
    """The API's reader, counting the months read from the month sketches."""

    months_read: list[str]

    def month_relation(self, months: list[str], *, fresh: bool = False) -> tuple[str, dict[str, Any]]:
        self.months_read = [*getattr(self, "months_read", []), *months]
        return super().month_relation(months, fresh=fresh)


def _run(reader: LakeRollupReader, tenant: str, shape: str, span: tuple[datetime, datetime], *,
         months: bool = True) -> Any:
    engine = QueryEngine(None, reader, horizons=LAKE_ONLY, day_sketches=True, month_sketches=months)
    spec = QuerySpec(**({"metrics": ("events", "revenue", "unique_users"), "start": span[0], "end": span[1]}
                        | SHAPES[shape]))
    return engine.run(tenant, spec, NOW)


def _same_as_day_rows(settings: Settings, tenants: tuple[str, ...] = ("acme", "beta")) -> int:
    """Every shape and range read with the month sketches equals the day rows' answer; the months read."""
    reader = CountingReader(settings, listing_seconds=0)
    plain = LakeRollupReader(settings, listing_seconds=0)
    try:
        for tenant in tenants:
            for shape in SHAPES:
                for name, span in RANGES.items():
                    got, want = _run(reader, tenant, shape, span), _run(plain, tenant, shape, span, months=False)
                    assert got.sources == want.sources == ["cold:day_sketches"], (tenant, shape, name)
                    assert (got.columns, got.rows, got.approximate, got.error_bounds) == \
                        (want.columns, want.rows, want.approximate, want.error_bounds), (tenant, shape, name)
        return len(getattr(reader, "months_read", []))
    finally:
        reader.close()
        plain.close()


def _merged(settings: Settings) -> set[str]:
    return current_months(open_table(settings, DAY_SKETCHES_TABLE), open_table(settings, MONTH_SKETCHES_TABLE))


def _month_tenants(settings: Settings) -> set[str]:
    """The tenants in every Parquet file under the month sketches' folder, old files included."""
    folder = Path(settings.lake_uri) / "cold" / "month_sketches"
    return {t for f in folder.rglob("*.parquet") for t in pq.read_table(f, columns=["tenant"])["tenant"].to_pylist()}


def test_merged_months_give_the_day_rows_answers_and_the_truth(lake: tuple) -> None:
    settings, events, _reader = lake
    _build_all(settings)
    compact_months(settings, before=date(2018, 4, 1))
    assert _merged(settings) == set()

    done = merge_months(settings, before=date(2018, 4, 1), run_id="t")

    assert sorted(d["partition"] for d in done) == ["month=2018-01", "month=2018-02", "month=2018-03"]
    assert _merged(settings) == MONTHS
    assert merge_months(settings, before=date(2018, 4, 1)) == [], "current merges are not written again"
    read = _same_as_day_rows(settings)
    # totals read whole months from the merges (a day series never does): 2 tenants x 3 total shapes x 6 months
    assert read == 2 * 3 * (3 + 2 + 1 + 2)
    reader = LakeRollupReader(settings, listing_seconds=0)
    for tenant in ("acme", "beta"):  # against the events themselves
        n, revenue, users = _truth(events, tenant)
        [[got_n, got_revenue, got_users]] = _run(reader, tenant, "total", (START, NOW)).rows
        assert got_n == n and got_revenue == pytest.approx(revenue)
        assert abs(got_users - users) <= relative_error_bound(PRECISIONS[""]) * users
    reader.close()


def test_a_purge_in_a_merged_month_merges_it_again_without_the_tenant(lake: tuple) -> None:
    settings, _events_, reader = lake
    _build_all(settings)
    compact_months(settings, before=date(2018, 4, 1))
    merge_months(settings, before=date(2018, 4, 1))
    acme_before = {(s, r): _run(reader, "acme", s, span).rows for s in SHAPES for r, span in RANGES.items()}
    assert _month_tenants(settings) == {"acme", "beta"}
    audit = AuditLog(settings)
    place_hold(audit, "acme", DAYS[0].isoformat(), DAYS[-1].isoformat(), "case 16", placed_by="test")

    report = Purger(settings, load_policy(settings), audit, as_of=datetime(2026, 3, 2, tzinfo=UTC)).run(
        confirm_large=True)

    items = {(i.partition, tuple(i.tenants)) for i in report.items if i.dataset == "month_sketches"}
    assert items == {(f"month={m}", ("beta",)) for m in MONTHS}
    assert _month_tenants(settings) == {"acme"}, "no file of the month sketches keeps the purged tenant (vacuumed)"
    assert _merged(settings) == MONTHS, "merged again from the purged day sketches"
    records = [r for r in audit.records() if r["action"] == "purge" and r["dataset"] == "month_sketches"]
    assert sorted(r["partition"] for r in records) == sorted(f"month={m}" for m in MONTHS)
    assert all(r["details"]["tenants"] == ["beta"] and r["details"]["table"] == MONTH_SKETCHES_TABLE.name
               for r in records)
    check = verify_tables(settings, audit.records())
    assert check.ok and check.checked >= len(records), (check.checked, check.problems)
    for (shape, name), rows in acme_before.items():
        assert _run(reader, "acme", shape, RANGES[name]).rows == rows, (shape, name)
    assert _run(reader, "beta", "total", (START, NOW)).rows in ([], [[0, 0.0, 0]])
    _same_as_day_rows(settings, ("acme",))


def test_a_day_changed_after_its_month_was_merged_is_not_read_from_the_merge(lake: tuple) -> None:
    settings, events, reader = lake
    _build_all(settings)
    compact_months(settings, before=date(2018, 4, 1))
    merge_months(settings, before=date(2018, 4, 1))
    changed = DAYS[6]  # in February
    extra = _events(changed, "acme", random.Random(5), 50_000, 400)  # 400 more events, mostly new users
    mine = [e for e in events if e["at"].date() == changed]
    publish_day(settings, COLD_ROLLUPS_DAILY_TABLE, changed, _daily_rollups(mine + extra, changed), ROLLUP_KEYS,
                [], {}, "t")
    assert build_day_sketches(settings, changed, "t").built  # February's day file rewritten with the day

    assert _merged(settings) == MONTHS - {"2018-02"}, "February's merge is older than its day sketches"
    truth = _truth(events + extra, "acme")
    answer = _run(reader, "acme", "total", (START, NOW))
    assert answer.rows[0][0] == truth[0], "the changed day counted: February read from its day rows"
    _same_as_day_rows(settings)

    merge_months(settings, before=date(2018, 4, 1))  # the movers' next run
    assert _merged(settings) == MONTHS
    assert _run(reader, "acme", "total", (START, NOW)).rows == answer.rows
    assert _same_as_day_rows(settings) > 0


def test_a_mover_run_merges_the_compacted_months_audited(lake: tuple) -> None:
    from storage_tiers.tiers.movers import DayReport, TierMover

    settings, _events_, _reader = lake
    audit = AuditLog(settings)
    mover = TierMover(settings, load_policy(settings), audit, as_of=datetime(2018, 4, 2, tzinfo=UTC), run_id="r")
    build_day_sketches(settings, DAYS[-1], "r")  # (the step before the upkeep builds the mover's own day)

    mover._sketch_upkeep(DAYS[-1], DayReport(DAYS[-1]))

    assert _merged(settings) == MONTHS
    records = [r for r in audit.records() if r["dataset"] == "month_sketches"]
    assert sorted(r["partition"] for r in records) == sorted(f"month={m}" for m in MONTHS)
    assert all(r["action"] == "compact_cold" and r["details"]["table_version"] is not None for r in records)
    check = verify_tables(settings, audit.records())
    assert check.ok and check.checked >= len(records), (check.checked, check.problems)
    _same_as_day_rows(settings)


def test_a_purge_stopped_before_merging_again_is_finished_by_the_next_one(lake: tuple) -> None:
    from common.lake_tables import delete_rows

    settings, _events_, reader = lake
    _build_all(settings)
    compact_months(settings, before=date(2018, 4, 1))
    merge_months(settings, before=date(2018, 4, 1))
    # what a purge stopped after the day sketches leaves: beta's February rows gone from them, not from the merge
    delete_rows(settings, DAY_SKETCHES_TABLE, "month = '2018-02' AND tenant = 'beta'", "purge", "month=2018-02", {})
    assert _merged(settings) == MONTHS - {"2018-02"}
    assert _month_tenants(settings) == {"acme", "beta"}

    report = Purger(settings, load_policy(settings), AuditLog(settings), as_of=NOW).run()  # nothing expired

    assert [(i.partition, i.tenants) for i in report.items] == [("month=2018-02", ["beta"])]
    assert _merged(settings) == MONTHS
    feb = Path(settings.lake_uri) / "cold" / "month_sketches" / "month=2018-02"
    assert {t for f in feb.rglob("*.parquet") for t in pq.read_table(f, columns=["tenant"])["tenant"].to_pylist()} \
        == {"acme"}, "no file of February's merge keeps beta"
    _same_as_day_rows(settings)
