"""A clickstream with known sessions, funnels and cohorts, for the product-analytics tests.

Hand-made cases — ties on time broken by the event id, repeated steps, exclusions, a session crossing
midnight, a chain cut at 24 hours, a client session id, strict order broken by a scroll — then random
visitors who browse, add to cart, check out and come back days later. ``lay_hot`` and ``lay_lake`` put
the events where the stream and the hourly archive would.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

import tests.analytics_truth as truth
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import HotStore
from common.lake import hour_partition
from common.settings import Settings

PAGES = ["/", "/product", "/cart", "/checkout"]
FUNNEL = [{"event": "page_view"}, {"event": "add_to_cart"}, {"event": "checkout"}, {"event": "purchase"}]
REPEAT = [{"event": "page_view", "filters": [{"field": "page", "value": "/product"}]}, {"event": "page_view"},
          {"event": "purchase"}]
EXCLUDE = [{"event": "remove_from_cart", "from_step": 1, "to_step": 3}]


class Clickstream:
    """Events of one tenant with ids that sort in creation order (so ties on time have a known order)."""

    def __init__(self, tenant: str, prefix: str) -> None:
        self.tenant, self.prefix, self.events, self.n = tenant, prefix, [], 0

    def add(self, user: str, event: str, at: datetime, page: str = "/", country: str = "US", device: str = "web",
            session: str | None = None, event_id: str | None = None) -> None:
        self.n += 1
        self.events.append({
            "tenant": self.tenant, "event": event, "timestamp": at.replace(microsecond=at.microsecond // 1000 * 1000),
            "event_id": event_id or f"{self.prefix}-{self.n:06d}", "user_id": f"{self.prefix}{user}", "page": page,
            "country": country, "device": device, "revenue": 10.0 if event == "purchase" else 0.0,
            "properties": json.dumps({"session_id": session}) if session else "", "received_at": at})


def clickstream(tenant: str, prefix: str, start: datetime, days: int, seed: int) -> Clickstream:
    """Hand-made cases on the first days, then random visitors over ``days`` days from ``start``."""
    c = Clickstream(tenant, prefix)
    t = (start + timedelta(days=1, hours=2)).replace(second=0, microsecond=0)
    # ties on time: add_to_cart's id sorts before the page view's at the same instant, so it comes first
    c.add("tie", "add_to_cart", t, event_id=f"{prefix}-a-tie")
    c.add("tie", "page_view", t, page="/product", event_id=f"{prefix}-b-tie")
    c.add("tie", "checkout", t + timedelta(minutes=1))
    # repeated step: one product page view then a purchase does not pass page_view -> page_view
    c.add("rep1", "page_view", t, page="/product")
    c.add("rep1", "purchase", t + timedelta(minutes=3))
    c.add("rep2", "page_view", t, page="/product")
    c.add("rep2", "page_view", t, page="/cart")  # same instant, a distinct event: step 2
    c.add("rep2", "purchase", t + timedelta(minutes=2))
    # exclusion between steps 1 and 3; a second, clean attempt later the same day still counts
    c.add("excl", "page_view", t, page="/product")
    c.add("excl", "remove_from_cart", t + timedelta(minutes=1))
    c.add("excl", "page_view", t + timedelta(minutes=2))
    c.add("excl", "purchase", t + timedelta(minutes=3))
    c.add("excl2", "page_view", t, page="/product")
    c.add("excl2", "remove_from_cart", t + timedelta(minutes=1))
    c.add("excl2", "page_view", t + timedelta(minutes=2))
    # a session crossing midnight, and one chain cut at 24 hours (an event every 20 minutes for 26 hours)
    midnight = t.replace(hour=0, minute=0) + timedelta(days=1)
    for minutes in (-10, 15, 40):
        c.add("night", "page_view", midnight + timedelta(minutes=minutes), page="/product")
    for k in range(79):
        c.add("marathon", "page_view" if k % 3 else "click", t + timedelta(minutes=20 * k), page=PAGES[k % 4])
    # a client session id keeps events an hour apart together
    for k in range(3):
        c.add("client", "page_view", t + timedelta(hours=k), page=PAGES[k], session="cs-1")
    # strict order broken by a scroll between the steps
    c.add("strict", "page_view", t)
    c.add("strict", "scroll", t + timedelta(seconds=5))
    c.add("strict", "add_to_cart", t + timedelta(seconds=9))
    rng = random.Random(seed)
    for u in range(120):
        user, country, device = f"r{u}", rng.choice(["US", "US", "DE", "FR", "JP"]), rng.choice(["web", "ios"])
        day = rng.randrange(days)
        while day < days:
            at = start + timedelta(days=day, hours=rng.randint(0, 23), minutes=rng.randint(0, 59),
                                   milliseconds=rng.randint(0, 999))
            for event, page in visit(rng):
                c.add(user, event, at, page=page, country=country, device=device)
                at += rng.choice([timedelta(0), timedelta(seconds=rng.randint(1, 300)), timedelta(minutes=25),
                                  timedelta(minutes=45)])
            day += rng.choice([1, 2, 3, 6, 9, 40])
    return c


def visit(rng: random.Random) -> list[tuple[str, str]]:
    steps = [("page_view", rng.choice(PAGES))]
    for _ in range(rng.randint(0, 5)):
        steps.append(rng.choice([("page_view", rng.choice(PAGES)), ("click", "/product"), ("scroll", "/"),
                                 ("page_view", "/product")]))
    if rng.random() < 0.6:
        steps.append(("add_to_cart", "/product"))
        if rng.random() < 0.15:
            steps.append(("remove_from_cart", "/cart"))
        if rng.random() < 0.6:
            steps.append(("checkout", "/checkout"))
            if rng.random() < 0.6:
                steps.append(("purchase", "/checkout"))
    return steps


def lay_hot(hot: HotStore, events: list[dict[str, Any]]) -> None:
    """Into ``events_raw`` one hourly partition per insert, as the stream's micro-batches do."""
    by_hour: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_hour[hour_partition(e["timestamp"])].append(e)
    for rows in by_hour.values():
        hot.insert_arrow("events_raw", pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA))


def lay_lake(settings: Settings, events: list[dict[str, Any]], tenant: str) -> None:
    """The tenant's events appended to the archive's Delta table in one commit (other tenants' rows stay),
    sorted within each hour as the hourly archive sorts them."""
    from common.lake_tables import ARCHIVE_TABLE, append_rows, with_partition_columns

    by_hour: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_hour[e["timestamp"].astimezone(UTC).replace(minute=0, second=0, microsecond=0)].append(e)
    tables = []
    for hour, rows in sorted(by_hour.items()):
        rows.sort(key=truth.order_key)
        tables.append(with_partition_columns(pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA), ARCHIVE_TABLE,
                                             hour))
    if tables:
        append_rows(settings, ARCHIVE_TABLE, pa.concat_tables(tables), "test", {"tenant": tenant})


def laid_recent_and_old(settings: Settings, hot: HotStore, tenant: str, prefix: str, seed: int) -> dict[str, Any]:
    """Five recent days of the tenant's clickstream in the hot tier and 30 days 200 days back in the lake: the
    events (``recent``, ``old``) and a span inside each (``hot``, ``lake``) that only that tier holds."""
    now = datetime.now(UTC).replace(microsecond=0)
    recent = clickstream(tenant, f"{prefix}h", now - timedelta(days=6), 5, seed=seed).events
    old = clickstream(tenant, f"{prefix}l", now - timedelta(days=200), 30, seed=seed + 1).events
    lay_hot(hot, recent)
    lay_lake(settings, old, tenant)
    return {"recent": recent, "old": old, "hot": (now - timedelta(days=5), now - timedelta(days=2)),
            "lake": (now - timedelta(days=199), now - timedelta(days=175))}
