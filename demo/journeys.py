"""Visitors of a web shop, visit by visit: they land, browse products, add to cart, check out, buy — and
come back days later — so the demo's funnels, retention grids, paths and session numbers mean something.

The faults clickstream (``demo.clickstream``) draws every event independently, which is right for
counting and deduplication but has no sessions, no order and nobody returning. Here each visitor has
a country, a device and a habit of returning; each visit is a session (a client ``session_id``) that
walks the shop's pages with human pauses and stops at some step of the purchase funnel:

  page_view (landing) → page_view (products, 0–6) → add_to_cart → begin_checkout → purchase

Each step is taken with a fixed chance (``FUNNEL_CHANCES``), returning visitors convert more often,
and after each visit a visitor returns with a chance that fades with every visit, after a gap of
hours to days. Traffic follows the day: more visits in the afternoon and evening (UTC), fewer at night.
The generator is seeded: the same seed gives the same events.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FUNNEL = [{"event": "page_view"}, {"event": "add_to_cart"}, {"event": "begin_checkout"}, {"event": "purchase"}]
# chance of taking each step after the previous one, for a first visit and for a returning visitor
FUNNEL_CHANCES = {"add_to_cart": (0.30, 0.45), "begin_checkout": (0.55, 0.65), "purchase": (0.70, 0.80)}
RETURN_CHANCE = 0.55  # after the first visit; multiplied by RETURN_FADE after each further visit
RETURN_FADE = 0.8
SIGNUP_CHANCE = 0.12  # on a first visit
HOURLY_WEIGHTS = (2, 1, 1, 1, 1, 2, 3, 4, 6, 7, 8, 8, 9, 9, 9, 10, 10, 11, 12, 12, 11, 8, 5, 3)  # UTC hour of day
COUNTRIES = (("US", 35), ("DE", 12), ("GB", 10), ("FR", 8), ("IN", 10), ("BR", 8), ("JP", 7), ("CA", 5), ("ES", 5))
DEVICES = (("mobile", 55), ("desktop", 40), ("tablet", 5))
LANDINGS = (("/", 50), ("/blog", 15), ("/product", 20), ("/pricing", 15))
PRODUCTS = tuple(f"/product/{i}" for i in range(40))


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    names, weights = zip(*weighted, strict=True)
    return rng.choices(names, weights)[0]


@dataclass(frozen=True)
class Visitor:
    user_id: str
    country: str
    device: str


class Journeys:
    """Seeded visitors of one tenant's shop; ``events`` lists everything they did in a time range."""

    def __init__(self, tenant: str, seed: int = 7, visitors_per_day: int = 150) -> None:
        self.tenant = tenant
        self.rng = random.Random(seed)
        self.visitors_per_day = visitors_per_day

    def events(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Every event of the visitors whose first visit falls in ``[start, end)`` and of their returns before
        ``end``, in the shape of ``common.events.EVENT_ARROW_SCHEMA`` (timestamps to the millisecond), in time
        order."""
        out: list[dict[str, Any]] = []
        days = max(1, round((end - start) / timedelta(days=1)))
        for n in range(self.visitors_per_day * days):
            visitor = Visitor(f"v{n:06d}-{self.rng.getrandbits(24):06x}", _pick(self.rng, COUNTRIES),
                              _pick(self.rng, DEVICES))
            at = self._busy_moment(start, end)
            visit, chance = 0, RETURN_CHANCE
            while at < end:
                out.extend(e for e in self._visit(visitor, at, visit) if e["timestamp"] < end)
                if self.rng.random() >= chance:
                    break
                visit, chance = visit + 1, chance * RETURN_FADE
                at = at + timedelta(hours=self.rng.uniform(6, 24) + 24 * self.rng.expovariate(1 / 3))
        out.sort(key=lambda e: (e["timestamp"], e["event_id"]))
        return out

    def _busy_moment(self, start: datetime, end: datetime) -> datetime:
        """A moment in ``[start, end)``, its hour of day drawn by the traffic curve."""
        while True:
            day = start + timedelta(days=self.rng.randrange(max(1, (end - start).days + 1)))
            hour = self.rng.choices(range(24), HOURLY_WEIGHTS)[0]
            at = day.replace(hour=hour, minute=0, second=0, microsecond=0)
            at += timedelta(seconds=self.rng.uniform(0, 3600))
            if start <= at < end:
                return at

    def _visit(self, visitor: Visitor, at: datetime, visit: int) -> Iterator[dict[str, Any]]:
        rng = self.rng
        session = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        returning = visit > 0
        device = visitor.device if rng.random() < 0.85 else _pick(rng, DEVICES)

        def event(name: str, page: str, revenue: float = 0.0) -> dict[str, Any]:
            nonlocal at
            moment = at.replace(microsecond=at.microsecond // 1000 * 1000)
            at += timedelta(seconds=rng.uniform(8, 150))
            return {"tenant": self.tenant, "event": name, "timestamp": moment,
                    "event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex, "user_id": visitor.user_id,
                    "page": page, "country": visitor.country, "device": device, "revenue": revenue,
                    "properties": json.dumps({"session_id": session}), "received_at": moment}

        landing = _pick(rng, LANDINGS)
        yield event("page_view", rng.choice(PRODUCTS) if landing == "/product" else landing)
        if not returning and rng.random() < SIGNUP_CHANCE:
            yield event("signup", "/signup")
        viewed = [rng.choice(PRODUCTS) for _ in range(min(6, int(rng.expovariate(1 / 2.2))))]
        for page in viewed:
            yield event("page_view", page)
            if rng.random() < 0.25:
                yield event("click", page)
        for step, page in (("add_to_cart", "/cart"), ("begin_checkout", "/checkout"), ("purchase", "/checkout")):
            if rng.random() >= FUNNEL_CHANCES[step][returning]:
                return
            if step == "begin_checkout":
                yield event("page_view", "/checkout")
            yield event(step, page, round(rng.lognormvariate(3.8, 0.6), 2) if step == "purchase" else 0.0)


def history(tenant: str, days: int, now: datetime, seed: int = 7, visitors_per_day: int = 150) -> list[dict[str, Any]]:
    """``days`` of a shop's visits ending ``now`` (UTC)."""
    now = now.astimezone(UTC)
    return Journeys(tenant, seed, visitors_per_day).events(now - timedelta(days=days), now)
