"""Hot-tier concurrency on the real embedded engine: the writer's own session and per-tenant query slots.

One tenant's slow queries must neither stall the stream's inserts nor take every query session from the
other tenants. The slow query is ClickHouse's own ``sleep()``, so the timings do not depend on data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pyarrow as pa
from fastapi.testclient import TestClient

from common.hot_store import ClickHouseHotStore, HotStore
from common.settings import Settings
from serving.app import build_serving, create_app
from serving.tenancy.query_slots import TenantBusy, TenantFairStore, TenantQuerySlots
from tests.component.conftest import ADMIN_KEY
from tests.component.harness import InMemoryPublisher
from tests.component.seed import Seeded, iso

SLOW = "SELECT sleep(1.5) AS slept, {tenant:String} AS tenant"
QUICK = "SELECT {tenant:String} AS tenant"


def _in_background(call: Callable[[], object], outcomes: list[str]) -> threading.Thread:
    def run() -> None:
        try:
            call()
            outcomes.append("answered")
        except TenantBusy:
            outcomes.append("busy")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_an_insert_does_not_wait_behind_a_slow_query(settings: Settings, hot: HotStore) -> None:
    store = ClickHouseHotStore(settings.effective_clickhouse_dsn, query_sessions=2)
    try:
        store.command("CREATE TABLE IF NOT EXISTS concurrency_probe (x UInt64) ENGINE = MergeTree ORDER BY x")
        outcomes: list[str] = []
        slow = _in_background(lambda: store.query_arrow(SLOW, {"tenant": "acme"}), outcomes)
        time.sleep(0.3)  # the slow query is running
        took = _timed(lambda: store.insert_arrow("concurrency_probe", pa.table({"x": pa.array([1, 2], pa.uint64())})))
        slow.join()
        assert outcomes == ["answered"]
        assert took < 0.7, f"the insert waited {took:.2f} s behind a query"
        assert store.query_arrow("SELECT count() AS n FROM concurrency_probe").to_pylist() == [{"n": 2}]
    finally:
        store.command("DROP TABLE IF EXISTS concurrency_probe")
        store.close()


def test_one_tenants_slow_queries_leave_query_sessions_to_the_others(settings: Settings, hot: HotStore) -> None:
    store = ClickHouseHotStore(settings.effective_clickhouse_dsn, query_sessions=3)
    fair = TenantFairStore(store, TenantQuerySlots(per_tenant=2, wait_seconds=0.2))
    try:
        outcomes: list[str] = []
        hogs = [_in_background(lambda: fair.query_arrow(SLOW, {"tenant": "hog"}), outcomes) for _ in range(4)]
        time.sleep(0.5)  # two of the hog's queries run; the other two waited 0.2 s for a slot and were refused
        took = _timed(lambda: fair.query_arrow(QUICK, {"tenant": "quiet"}))
        for thread in hogs:
            thread.join()
        assert sorted(outcomes) == ["answered", "answered", "busy", "busy"]
        assert took < 0.7, f"another tenant's query waited {took:.2f} s behind the hog's"
        assert fair.slots.running("hog") == 0 and fair.slots.refused == 2
    finally:
        store.close()


def test_a_tenant_over_its_hot_query_slots_is_answered_429_and_the_others_are_not(
        settings: Settings, hot: HotStore, data: dict[str, Seeded]) -> None:
    changed = settings.model_copy(update={"hot_queries_per_tenant": 1, "tenant_query_wait_seconds": 0.1})
    serving = build_serving(changed, hot, publisher=InMemoryPublisher())
    assert isinstance(serving.store, TenantFairStore)
    seeded = data["acme"]
    params = {"metric": "events", "granularity": "minute", "from": iso(seeded.now - timedelta(minutes=30)),
              "to": iso(seeded.now)}
    with TestClient(create_app(serving), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        with serving.store.slots.hold("acme"):  # acme's one slot is taken by a query still running
            busy = client.get("/v1/timeseries", params={**params, "tenant": "acme"})
            other = client.get("/v1/timeseries", params={**params, "tenant": "globex"})
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1", busy.text
        assert "LAKEHOUSE_HOT_QUERIES_PER_TENANT" in busy.json()["error"]
        assert other.status_code == 200, other.text
        assert client.get("/v1/timeseries", params={**params, "tenant": "acme"}).status_code == 200


def test_no_session_remembers_hash_table_sizes(settings: Settings, hot: HotStore) -> None:
    """Each aggregation's remembered hash-table size is keyed by the query's constants, so a dashboard over a moving
    range adds one per question and the hot node's memory never stops growing: every session has it off, the
    read-only ones (the hot node's Flight readers) too."""
    store = ClickHouseHotStore(settings.effective_clickhouse_dsn, query_sessions=2)
    reader = store.read_only(query_sessions=1)
    try:
        for session in (store, reader):
            answer = session.query_arrow("SELECT getSetting('collect_hash_table_stats_during_aggregation') AS kept")
            assert answer.to_pylist() == [{"kept": False}]
        store.command("CREATE TABLE IF NOT EXISTS stats_probe (x UInt64) ENGINE = Memory")
        store.command("INSERT INTO stats_probe SELECT getSetting('collect_hash_table_stats_during_aggregation')")
        assert store.query_arrow("SELECT x FROM stats_probe").to_pylist() == [{"x": 0}]  # the writer's session
    finally:
        store.command("DROP TABLE IF EXISTS stats_probe")
        reader.close()
        store.close()
