"""The component tier: the real FastAPI app in this process, no service started.

One chDB hot store for the whole tier (chDB allows one data folder per process and costs a second to
open; package-scoped fixtures close it after the tier's last test) in a temporary home, with the real
migrations applied; one temporary local lake; the app built by ``serving.app.build_serving`` and
``create_app`` as ``lakehouse serve`` builds it, with an in-memory publisher in place of Kafka and no
Redis (see ``harness.py``). Tests isolate themselves by tenant.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from common.hot_schema import migrate
from common.hot_store import ClickHouseHotStore, FlightHotStore, HotStore
from common.settings import Settings
from serving.app import build_serving, create_app
from serving.context import Serving
from serving.tenancy.auth import bearer_headers
from tests.component.harness import InMemoryPublisher, RouteLog, SlowHotStore
from tests.component.seed import Seeded, lay_hot, lay_lake, synthetic

ADMIN_KEY = "component-admin-key"
TENANTS = ("acme", "globex")  # seeded with data; tenant keys are issued for both
ROUTES = RouteLog()  # filled by every request of the session; test_route_coverage.py reads it
COVERAGE_TEST = "test_route_coverage.py"
_HERE = Path(__file__).parent
_partial_run: list[str] = []  # why the route coverage cannot be judged in this run, if it cannot


def closed_port() -> int:
    """A local port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="package")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("component-home")
    return Settings(
        home=home, lake_uri=str(home / "lake"), clickhouse_dsn="", hot_store_mode="direct",
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",  # Redis down: uncached answers, rate limits open
        kafka_bootstrap=f"127.0.0.1:{closed_port()}",  # never reached: the publisher is in memory
        admin_key=ADMIN_KEY, alert_interval_seconds=0, live_interval_seconds=0.2, query_timeout_seconds=10,
        lake_session_seconds=0, auth_cache_seconds=60,
    )


@pytest.fixture(scope="package")
def hot(settings: Settings) -> Iterator[HotStore]:
    store = ClickHouseHotStore(settings.effective_clickhouse_dsn)
    try:
        migrate(store)
        yield store
    finally:
        store.close()  # frees the process's chDB for the integration tests' own checks


@pytest.fixture(scope="package")
def data(settings: Settings, hot: HotStore) -> dict[str, Seeded]:
    """Each tenant's events: the recent ones in the hot tier, the older ones in the lake."""
    now = datetime.now(UTC)
    seeded = {tenant: synthetic(tenant, now, seed=i) for i, tenant in enumerate(TENANTS)}
    for laid in seeded.values():
        lay_hot(hot, laid.hot)
        lay_lake(settings, laid.lake, laid.now)
    return seeded


@pytest.fixture(scope="package")
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture(scope="package")
def serving(settings: Settings, hot: HotStore, publisher: InMemoryPublisher) -> Serving:
    return build_serving(settings, hot, publisher=publisher)


@pytest.fixture(scope="package")
def app(serving: Serving) -> FastAPI:
    return create_app(serving)


def _client(app: FastAPI) -> TestClient:
    return TestClient(ROUTES.wrap(app), headers=bearer_headers(ADMIN_KEY))


@pytest.fixture(scope="package")
def client(app: FastAPI, data: dict[str, Seeded]) -> Iterator[TestClient]:
    """The app with the admin key (it may name any tenant with ``?tenant=``), data laid."""
    with _client(app) as c:
        yield c


@pytest.fixture(scope="package")
def keys(client: TestClient) -> dict[str, str]:
    """A tenant key of each seeded tenant, issued through the admin API."""
    issued = {}
    for tenant in TENANTS:
        assert client.post("/v1/admin/tenants", json={"id": tenant}).status_code == 201
        answer = client.post(f"/v1/admin/tenants/{tenant}/keys", json={"role": "tenant"})
        assert answer.status_code == 201, answer.text
        issued[tenant] = answer.json()["key"]
    return issued


def app_over(settings: Settings, store: HotStore, **changes: Any) -> TestClient:
    """A second app as served, over another hot store (slow, unreachable) or with other settings."""
    changed = settings.model_copy(update=changes)
    return _client(create_app(build_serving(changed, store, publisher=InMemoryPublisher())))


@pytest.fixture(scope="package")
def slow_client(settings: Settings, hot: HotStore, data: dict[str, Seeded]) -> Iterator[TestClient]:
    """Queries time out: the hot node takes 1 s, the query timeout is 0.2 s."""
    with app_over(settings, SlowHotStore(hot, delay_s=1.0), query_timeout_seconds=0.2) as c:
        yield c


@pytest.fixture(scope="package")
def down_client(settings: Settings) -> Iterator[TestClient]:
    """The hot node is down: its Flight address refuses connections."""
    store = FlightHotStore(f"grpc://127.0.0.1:{closed_port()}", timeout_s=5)
    with app_over(settings, store) as c:
        yield c
    store.close()


# ------------------------------------------------------------------------------ route coverage


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The route coverage check runs after every other component test has made its requests (and before
    the tier's fixtures close: they are package-scoped, so chDB is free again for the tests after them)."""
    ours = [i for i, item in enumerate(items) if item.path.parent == _HERE]
    if not ours:
        return
    tier = [items[i] for i in ours]
    tier.sort(key=lambda item: item.path.name == COVERAGE_TEST)  # stable: the others keep their order
    for i, item in zip(ours, tier, strict=True):
        items[i] = item


def pytest_deselected(items: list[pytest.Item]) -> None:
    if any(item.path.parent == _HERE for item in items):
        _partial_run.append("some component tests were deselected")


def pytest_collection_finish(session: pytest.Session) -> None:
    collected = {item.path.name for item in session.items if item.path.parent == _HERE}
    missing = {p.name for p in _HERE.glob("test_*.py")} - collected
    if COVERAGE_TEST in collected and missing:
        _partial_run.append(f"not collected: {', '.join(sorted(missing))}")


def partial_run() -> list[str]:
    return list(_partial_run)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis-server`` of this module's own (Debian's binary, no persistence, a free local port; a few
    milliseconds): the rest of the tier runs without Redis (every answer uncached)."""
    port = closed_port()
    home: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(home)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
