"""One real stack per test session (Kafka, MinIO, Redis, API + hot node, stream job).

It runs under its own home and ports so that a demo stack on the default ports is not disturbed,
and tests isolate themselves by tenant. The stream job reads micro-batches of at most 64 Kafka records:
small enough that a test can kill it in the middle of a run it sizes for that (test_speed_layer.py), large
enough that a load's backlog drains in seconds (each micro-batch has a fixed cost of about a second here).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from common.hot_store import FlightHotStore, HotStore
from common.settings import Settings
from serving.tenancy.auth import bearer_headers
from stack.app_services import full_stack
from stack.services import Stack
from stack.tools import StackError
from tests.integration import direct_hot
from tests.integration.own_services import environment

# Helpers working side by side on one machine each set LAKEHOUSE_TEST_PORT_OFFSET (e.g. 100, 200)
# so that their sessions' services do not collide; CI leaves it at 0. Every port is below Linux's ephemeral
# range (32768-60999): an outgoing connection of any process took 38700 once and the API could not start.
_OFFSET = int(os.environ.get("LAKEHOUSE_TEST_PORT_OFFSET", "0"))
TEST_ENV = {
    "LAKEHOUSE_KAFKA_BOOTSTRAP": f"localhost:{24092 + _OFFSET}",
    "LAKEHOUSE_S3_ENDPOINT": f"http://127.0.0.1:{24000 + _OFFSET}",
    "LAKEHOUSE_REDIS_URL": f"redis://127.0.0.1:{23379 + _OFFSET}/0",
    "LAKEHOUSE_API_PORT": str(25000 + _OFFSET),
    "LAKEHOUSE_HOT_NODE_URL": f"grpc://127.0.0.1:{25815 + _OFFSET}",
    "LAKEHOUSE_STREAM_MAX_OFFSETS_PER_TRIGGER": "64",
    "LAKEHOUSE_STREAM_LANDING_TRIGGER_SECONDS": "5",
    "LAKEHOUSE_LAKE_SESSION_SECONDS": "1",
    # the broker-down test's 503 comes after this (25 s in production); a restarted broker's leaders are back in
    # a second or two (test_durability.py)
    "LAKEHOUSE_KAFKA_DELIVERY_TIMEOUT_SECONDS": "12",
    "LAKEHOUSE_ALERT_INTERVAL_SECONDS": "1",
    "LAKEHOUSE_ALERT_SETTLE_SECONDS": "10",
    # the alert tests' webhook receiver listens on loopback, which tenants may not reach in production
    "LAKEHOUSE_WEBHOOK_ALLOW_PRIVATE_CIDRS": "127.0.0.1/32",
    # scheduled reports: the tests' local SMTP server (aiosmtpd), a sensor that looks every 5 s, quick retries
    "LAKEHOUSE_SMTP_HOST": "127.0.0.1",
    "LAKEHOUSE_SMTP_PORT": str(25025 + _OFFSET),
    "LAKEHOUSE_SMTP_STARTTLS": "false",
    "LAKEHOUSE_REPORT_SENSOR_INTERVAL_SECONDS": "5",
    "LAKEHOUSE_REPORT_RETRY_BACKOFF_SECONDS": "0.2",
    # a read-only token for the hot node, so tests can prove what a reader may not do
    "LAKEHOUSE_HOT_NODE_READER_TOKEN": "integration-reader-token",
    # above test_live's 30 viewers of one key, below the 50 its cap test opens
    "LAKEHOUSE_LIVE_MAX_STREAMS_PER_KEY": "32",
}


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home: Path = tmp_path_factory.mktemp("lakehouse-home")
    env = {**TEST_ENV, "LAKEHOUSE_HOME": str(home)}
    with environment(env):
        yield Settings()



#: What the session's stack teardown found, shown in pytest's summary.
TEARDOWN_REPORT: list[str] = []


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """The session's stack; its teardown fails the session if any process of its home survives
    `down` (a leaked JVM or broker would starve the next run of memory and ports)."""
    stack = full_stack(settings)
    try:
        stack.up()
        yield stack
    finally:
        try:
            stack.down()
        finally:
            try:
                TEARDOWN_REPORT.append(f"session stack teardown: {stack.confirm_stopped()}")
            except StackError as exc:
                TEARDOWN_REPORT.append(f"session stack teardown FAILED: {exc}")
                pytest.fail(str(exc), pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in TEARDOWN_REPORT:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def hot(stack: Stack, settings: Settings) -> HotStore:
    """The hot store as every process but the hot node reaches it: through Flight."""
    return FlightHotStore.for_settings(settings)


@pytest.fixture(scope="module", autouse=True)
def _direct_hot_rows_forgotten() -> Iterator[None]:
    """After each module, the rows its tests wrote straight into the hot tier are deleted (direct_hot.py)."""
    yield
    direct_hot.forget_written()


@pytest.fixture(scope="session")
def api(stack: Stack, settings: Settings) -> Iterator[httpx.Client]:
    """Sends the admin key, which may name any tenant with ``?tenant=`` (serving/tenancy/auth.py)."""
    with httpx.Client(base_url=settings.api_url, timeout=30, headers=bearer_headers(settings.admin_key)) as client:
        yield client


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
