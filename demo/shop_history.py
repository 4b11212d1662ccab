"""Four weeks of a web shop's visits laid where the pipeline would have put them, before the demo streams.

Funnels, retention and paths need history: visitors who came back days later. Events older than the
stream's watermark are counted as late and kept out of the hot tier, and the hourly archive job would
take hours to pick them up, so the demo lays the shop's history directly, the way the pipeline leaves it:
every hour in the lake's archive table (one commit), every hour's minute rollups into the hot tier as the
stream writes them (its materialized views keep the hourly rollups that dashboards read for 90 days), and
the raw events of the hours within the hot tier's seven days (idempotent inserts, one per day). The history
is laid once per stack: a second demo finds the tenant's events and leaves them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore
from common.lake_tables import ARCHIVE_TABLE, append_rows, with_partition_columns
from common.rollups import minute_rollups
from common.settings import Settings
from demo.journeys import history

SHOP_TENANT = "shop"
HOT_DAYS = 7  # the hot tier's raw events (storage_tiers/tiers.yaml)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def has_history(store: HotStore, tenant: str = SHOP_TENANT) -> bool:
    rows = store.query_arrow("SELECT count() AS n FROM events_raw WHERE tenant = {tenant:String}",
                             {"tenant": tenant}).to_pylist()
    return bool(rows and rows[0]["n"])


def lay_history(settings: Settings, store: HotStore, now: datetime, days: int = 28, tenant: str = SHOP_TENANT,
                seed: int = 7, visitors_per_day: int = 150) -> int:
    """The shop's ``days`` of visits up to ``now`` into the archive, the last seven days also into the hot
    tier; returns how many events. Nothing is laid if the hot tier already holds the tenant's events."""
    if has_history(store, tenant):
        return 0
    events = history(tenant, days, now, seed=seed, visitors_per_day=visitors_per_day)
    by_hour: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_hour[_hour(e["timestamp"])].append(e)
    archive = [with_partition_columns(pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA), ARCHIVE_TABLE, hour)
               for hour, rows in sorted(by_hour.items())]
    if archive:
        append_rows(settings, ARCHIVE_TABLE, pa.concat_tables(archive), "demo-history",
                    {"tenant": tenant, "days": days, "written_by": "demo.shop_history"})
    hot_from = now - timedelta(days=HOT_DAYS) + timedelta(hours=1)  # whole hours inside the raw events' TTL
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)  # one insert per day: fewer, larger parts
    for e in events:
        by_day[f"{e['timestamp']:%Y%m%d}{'h' if _hour(e['timestamp']) >= hot_from else 'o'}"].append(e)
    for day, rows in sorted(by_day.items()):
        table = pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA)
        token = f"demo-history:{tenant}:{day}"
        if day.endswith("h"):
            store.insert_arrow("events_raw", table, token=f"{token}:raw")
        store.insert_arrow("rollups_1m_ingest", minute_rollups(table), token=f"{token}:rollups")
    return len(events)
