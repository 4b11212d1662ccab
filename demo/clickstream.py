"""A synthetic clickstream with the faults real clients produce: out-of-order, late, duplicate, malformed.

Used by the demo, the tests and the benchmarks. The generator is seeded, so a test can rebuild the
same events, and it labels each event with what it is (``kind``) so that the ground truth is
computed from the generator's own bookkeeping, never from the system under test.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from common.events import format_ts

TENANTS = ("acme", "globex", "initech")
EVENTS = (("page_view", 70), ("click", 20), ("purchase", 7), ("signup", 3))
COUNTRIES = (("US", 35), ("DE", 12), ("GB", 10), ("FR", 8), ("IN", 10), ("BR", 8), ("JP", 7), ("CA", 5), ("ES", 5))
DEVICES = (("mobile", 55), ("desktop", 40), ("tablet", 5))
PAGES = tuple(["/", "/product", "/pricing", "/cart", "/checkout", "/blog", "/docs", "/signup", "/login"]
              + [f"/product/{i}" for i in range(40)])


@dataclass
class GeneratedEvent:
    body: dict[str, Any]  # what is sent to the API
    kind: str  # "valid", "duplicate" (a resend of a valid event), "late" or "malformed"


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    names, weights = zip(*weighted, strict=True)
    return rng.choices(names, weights)[0]


class Clickstream:
    def __init__(self, seed: int = 7, tenants: tuple[str, ...] = TENANTS, users_per_tenant: int = 5000) -> None:
        self.rng = random.Random(seed)
        self.tenants = tenants
        self.users_per_tenant = users_per_tenant
        self._sent: list[dict[str, Any]] = []

    def _event(self, ts: datetime) -> dict[str, Any]:
        rng = self.rng
        name = _pick(rng, EVENTS)
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "tenant": rng.choice(self.tenants),
            "event": name,
            "timestamp": format_ts(ts),
            # Zipf-like: a few heavy users, a long tail.
            "user_id": int(self.users_per_tenant * rng.random() ** 2),
            "page": PAGES[min(int(rng.paretovariate(1.2)) - 1, len(PAGES) - 1)],
            "country": _pick(rng, COUNTRIES),
            "device": _pick(rng, DEVICES),
        }
        if name == "purchase":
            event["revenue"] = round(rng.uniform(5, 250), 2)
        return event

    def batch(
        self,
        n: int,
        now: datetime,
        *,
        disorder_s: float = 90.0,
        duplicate_rate: float = 0.01,
        malformed_rate: float = 0.005,
    ) -> list[GeneratedEvent]:
        """``n`` events around ``now``, out of order by up to ``disorder_s`` seconds."""
        out: list[GeneratedEvent] = []
        for _ in range(n):
            roll = self.rng.random()
            if roll < malformed_rate:
                out.append(GeneratedEvent(self._malformed(now), "malformed"))
            elif roll < malformed_rate + duplicate_rate and self._sent:
                out.append(GeneratedEvent(dict(self.rng.choice(self._sent[-5000:])), "duplicate"))
            else:
                event = self._event(now - timedelta(seconds=self.rng.uniform(0, disorder_s)))
                self._sent.append(event)
                out.append(GeneratedEvent(event, "valid"))
        return out

    def late_batch(self, n: int, now: datetime, lateness: timedelta) -> list[GeneratedEvent]:
        """Events whose time is ``lateness`` before ``now``: past the watermark when lateness exceeds it."""
        return [GeneratedEvent(self._event(now - lateness - timedelta(seconds=self.rng.uniform(0, 60))), "late")
                for _ in range(n)]

    def _malformed(self, now: datetime) -> Any:
        good = self._event(now)
        choice = self.rng.randrange(6)
        if choice == 0:
            del good["event"]
        elif choice == 1:
            good["timestamp"] = "yesterday at noon"
        elif choice == 2:
            good["user_id"] = {"id": 1}
        elif choice == 3:
            good["revenue"] = "a lot"
        elif choice == 4:
            good["timestamp"] = (now - timedelta(days=400)).isoformat()
        else:
            return ["not", "an", "object"]
        return good
