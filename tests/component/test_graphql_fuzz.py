"""Schemathesis fuzzes the GraphQL schema of the app served for real: no document it makes up, however odd,
is answered with a 5xx. The app is the component tier's (chDB in this process, no services), served by
uvicorn in a thread; the fuzzer acts as a tenant key of its own, so its mutations touch only its tenant.
One worker: see tests/integration/test_api_contract.py for why."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from common.hot_store import HotStore
from common.settings import Settings
from serving.app import build_serving, create_app
from tests.component.harness import InMemoryPublisher
from tests.graphql_checks import FUZZER_KEY, run_graphql_fuzzer

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 15  # per operation: the run stays within about a minute


@pytest.fixture
def served(settings: Settings, hot: HotStore) -> Iterator[str]:
    app = create_app(build_serving(settings, hot, publisher=InMemoryPublisher()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_no_generated_document_makes_graphql_answer_5xx(served: str, client: TestClient) -> None:
    assert client.post("/v1/admin/tenants", json={"id": "fuzz"}).status_code in (201, 409)
    key = client.post("/v1/admin/tenants/fuzz/keys", json=FUZZER_KEY).json()["key"]
    run_graphql_fuzzer(served, key, MAX_EXAMPLES)
