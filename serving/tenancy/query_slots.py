"""Per-tenant concurrency on the hot tier: one tenant's slow queries cannot take every query session.

The hot store runs a few queries at once (``hot_query_sessions``); without a limit per tenant, one tenant
firing slow queries (a year of raw events, a 50-widget dashboard) would hold them all and every other
tenant would wait. ``TenantFairStore`` wraps the API's hot store: a query whose parameters name a tenant
(every tenant-scoped query does: that parameter is how tenants are isolated) first takes one of that
tenant's ``hot_queries_per_tenant`` slots, waiting at most ``tenant_query_wait_seconds``; past that it is
answered 429 (``TenantBusy``). Queries without a tenant (health, the key directory) and writes pass
straight through; the stream's inserts reach the store's own writer session through the hot node anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from common.hot_store import HotStore, HotStoreError, write_count


class TenantBusy(HotStoreError):
    """The tenant already runs as many hot queries as it may: answered 429 with ``Retry-After`` (a live stream
    or an alert evaluation takes it as a passing hot-tier failure and tries again at its next tick)."""

    def __init__(self, tenant: str, limit: int) -> None:
        super().__init__(f"tenant {tenant!r} already runs {limit} hot-tier queries at once (the limit per tenant, "
                         "LAKEHOUSE_HOT_QUERIES_PER_TENANT): retry when one has finished, or narrow the queries")
        self.retry_after = 1


class TenantQuerySlots:
    """At most ``per_tenant`` holders per tenant; a caller waits up to ``wait_seconds`` for a slot."""

    def __init__(self, per_tenant: int, wait_seconds: float) -> None:
        self.per_tenant = max(1, per_tenant)
        self.wait_seconds = wait_seconds
        self._running: dict[str, int] = {}
        self._changed = threading.Condition()
        self.refused = 0

    def running(self, tenant: str) -> int:
        with self._changed:
            return self._running.get(tenant, 0)

    @contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        deadline = time.monotonic() + self.wait_seconds
        with self._changed:
            while self._running.get(tenant, 0) >= self.per_tenant:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.refused += 1
                    raise TenantBusy(tenant, self.per_tenant)
                self._changed.wait(left)
            self._running[tenant] = self._running.get(tenant, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                left_running = self._running[tenant] - 1
                if left_running:
                    self._running[tenant] = left_running
                else:
                    del self._running[tenant]
                self._changed.notify_all()


class TenantFairStore:
    """The hot store as the API uses it: tenant-scoped queries within their tenant's slots."""

    def __init__(self, store: HotStore, slots: TenantQuerySlots) -> None:
        self.inner = store
        self.slots = slots
        self.dsn = getattr(store, "dsn", "")

    def write_count(self, table: str) -> int | None:
        """The wrapped store's write counter: what the API keeps between questions (the day builds' marks,
        ``common.day_rollups``) is only kept while that counter stands still, and a wrapper without it would make
        every question read them again."""
        return write_count(self.inner, table)

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        tenant = (parameters or {}).get("tenant")
        if not isinstance(tenant, str):
            return self.inner.query_arrow(sql, parameters)
        with self.slots.hold(tenant):
            return self.inner.query_arrow(sql, parameters)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.inner.command(sql, parameters)

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        self.inner.insert_arrow(table, data, token=token)

    def close(self) -> None:
        self.inner.close()
