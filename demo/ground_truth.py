"""Expected rollups computed in plain Python from what the generator sent, independently of Spark and ClickHouse."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from demo.clickstream import GeneratedEvent


def minute_of(timestamp: str) -> datetime:
    ts = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)
    return ts.replace(second=0, microsecond=0)


def unique_valid(events: Iterable[GeneratedEvent], kinds: tuple[str, ...] = ("valid",)) -> list[dict[str, Any]]:
    """Events of ``kinds``, each ``(tenant, event_id)`` once (what the hot tier must count)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for item in events:
        if item.kind in kinds:
            seen.setdefault((item.body.get("tenant") or "default", item.body["event_id"]), item.body)
    return list(seen.values())


def per_minute(events: Iterable[dict[str, Any]], tenant: str) -> dict[datetime, dict[str, Any]]:
    """Per minute: events, revenue, distinct users, for one tenant."""
    out: dict[datetime, dict[str, Any]] = defaultdict(lambda: {"events": 0, "revenue": 0.0, "users": set()})
    for event in events:
        if event["tenant"] != tenant:
            continue
        row = out[minute_of(event["timestamp"])]
        row["events"] += 1
        row["revenue"] += float(event.get("revenue", 0.0))
        row["users"].add(str(event["user_id"]))
    return dict(out)


def totals_by(
    events: Iterable[dict[str, Any]], tenant: str, dimension: str, event: str | None = None
) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        if e["tenant"] == tenant and (event is None or e["event"] == event):
            counts[str(e[dimension])] += 1
    return dict(counts)
