"""A tenant with its own API key and a clickstream of recent events in the hot tier, and the ground truth.

Shared by the dashboard API tests and the browser test: events are generated (seeded), posted through
``POST /events`` like any client does, and the expected numbers are computed from what was sent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from common.hot_store import HotStore
from demo.clickstream import Clickstream
from demo.ground_truth import unique_valid
from demo.load import post_events
from tests.integration.conftest import wait_for


@dataclass
class TenantData:
    tenant: str
    key: str  # a tenant API key (bound to ``tenant``)
    events: list[dict[str, Any]]  # what the hot tier must count: each valid event once

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def totals(self, by: str, **where: str) -> dict[str, int]:
        return dict(Counter(str(e[by]) for e in self.matching(**where)))

    def matching(self, **where: str) -> list[dict[str, Any]]:
        return [e for e in self.events if all(str(e[k]) == v for k, v in where.items())]


def hot_events(hot: HotStore, tenant: str) -> int:
    sql = "SELECT sum(events) AS n FROM rollups_1m WHERE tenant = {t:String}"
    return int(hot.query_arrow(sql, {"t": tenant}).to_pylist()[0]["n"] or 0)


def tenant_with_events(api: httpx.Client, hot: HotStore, tenant: str, n: int = 1500, seed: int = 61) -> TenantData:
    """Create ``tenant`` and a key for it (the ``api`` client holds the admin key), post ``n`` events from the
    last two minutes (with resent duplicates) and wait until the hot tier's rollups hold every one."""
    api.post("/v1/admin/tenants", json={"id": tenant, "name": tenant}).raise_for_status()
    key = api.post(f"/v1/admin/tenants/{tenant}/keys").raise_for_status().json()["key"]
    stream = Clickstream(seed=seed, tenants=(tenant,), users_per_tenant=400)
    sent = stream.batch(n, datetime.now(UTC), disorder_s=120, duplicate_rate=0.02, malformed_rate=0.0)
    post_events(api, [e.body for e in sent], sync=True)
    truth = unique_valid(sent)
    wait_for(lambda: hot_events(hot, tenant) >= len(truth), 120, "the events in the hot tier's rollups")
    assert hot_events(hot, tenant) == len(truth)
    return TenantData(tenant, key, truth)
