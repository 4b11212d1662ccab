"""Events written straight into the hot tier (raw events and their 1-minute rollups), bypassing Kafka and
the stream: for tests that need data to appear at an exact moment, e.g. between two cache lookups.

Such rows never reach the landing, so the batch layer never sees them, and the restatement's guard rightly
refuses to swap an hour that holds them: a later test restating the same hour of the shared stack would
fail. ``forget_written`` (run after each test module by the integration conftest) deletes them again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from common import day_rollups
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore
from common.rollups import minute_rollups


def events_table(tenant: str, at: datetime, n: int, event: str = "page_view", country: str = "DE") -> pa.Table:
    """``n`` events of ``tenant`` at ``at`` (one millisecond apart), in the raw events' Arrow schema."""
    times = [at + timedelta(milliseconds=i) for i in range(n)]
    return pa.table({
        "tenant": [tenant] * n, "event": [event] * n, "timestamp": times,
        "event_id": [uuid.uuid4().hex for _ in range(n)], "user_id": [f"u{i}" for i in range(n)],
        "page": ["/"] * n, "country": [country] * n, "device": ["desktop"] * n, "revenue": [0.0] * n,
        "properties": [""] * n, "received_at": [datetime.now(UTC)] * n,
    }, schema=EVENT_ARROW_SCHEMA)


WRITTEN: dict[str, HotStore] = {}  # tenant → the store its rows were written through, until forget_written
HOT_TABLES = ("events_raw", "rollups_1m", "rollups_1h", "rollups_1h_by_day",  # the last two: rollups_1h's day copies
              "rollups_1h_by_day_shapes")


def insert_events(hot: HotStore, events: pa.Table) -> None:
    """Into events_raw and, through rollups_1m_ingest, rollups_1m and rollups_1h (as the stream writes)."""
    WRITTEN.update(dict.fromkeys(events["tenant"].to_pylist(), hot))
    token = uuid.uuid4().hex
    hot.insert_arrow("events_raw", events, token=f"{token}:raw")
    hot.insert_arrow("rollups_1m_ingest", minute_rollups(events), token=f"{token}:rollups")
    day_rollups.written(hot, events["timestamp"].to_pylist())  # as the stream does: a copied day is read no more


def forget_written() -> None:
    """Delete the rows of every tenant written through ``insert_events`` from the hot tables."""
    stores: dict[int, tuple[HotStore, list[str]]] = {}
    for tenant, hot in WRITTEN.items():
        stores.setdefault(id(hot), (hot, []))[1].append(tenant)
    for hot, tenants in stores.values():
        for table in HOT_TABLES:
            hot.command(f"ALTER TABLE {table} DELETE WHERE has({{tenants:Array(String)}}, tenant) "
                        "SETTINGS mutations_sync = 2", {"tenants": sorted(tenants)})
    WRITTEN.clear()
