"""Events written straight into the hot tier (raw events and their 1-minute rollups), bypassing Kafka and
the stream: for tests that need data to appear at an exact moment, e.g. between two cache lookups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa

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


def insert_events(hot: HotStore, events: pa.Table) -> None:
    """Into events_raw and, through rollups_1m_ingest, rollups_1m and rollups_1h (as the stream writes)."""
    token = uuid.uuid4().hex
    hot.insert_arrow("events_raw", events, token=f"{token}:raw")
    hot.insert_arrow("rollups_1m_ingest", minute_rollups(events), token=f"{token}:rollups")
