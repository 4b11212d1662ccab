"""Dagster as a data engineer runs it: webserver and daemon (`dagster dev`), a backfill over hours through GraphQL.

The UI's own API (GraphQL) launches a partition backfill of both assets over three hours; the daemon
turns it into runs, which execute in their own processes against the real stack (the hot node over
Arrow Flight, the lake, Spark) and must all succeed. The hours lie before the current one: hours with
landing data from earlier tests, or empty ones (an empty hour archives to an empty commit and
restates to nothing), either way a real run of every step.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch.archive import archived_hour
from common.settings import Settings
from orchestration.hours import floor_hour, partition_hour, partition_key
from orchestration.instance import start_dagster_dev
from stack.services import Stack
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      partitionNames
      runs { id status tags { key value } }
    }
    ... on Error { message }
  }
}
"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture()
def dagster_ui(stack: Stack, settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """`dagster dev` (webserver + daemon) on workspace.yaml, DAGSTER_HOME in a temporary folder, test settings."""
    port = free_port()
    log_path = tmp_path / "dagster.log"
    with log_path.open("wb") as log:
        process = start_dagster_dev(settings, port=port, home=tmp_path / "dagster_home", output=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def answers() -> bool:
        assert process.poll() is None, f"dagster dev exited: {log_path.read_text()[-3000:]}"
        try:
            return client.get("/server_info").status_code == 200
        except httpx.TransportError:
            return False

    try:
        started = time.perf_counter()
        wait_for(answers, 120, "dagster dev to answer /server_info")
        print(f"dagster dev answered after {time.perf_counter() - started:.1f}s")
        yield client
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"dagster dev did not stop on SIGTERM: {log_path.read_text()[-3000:]}")


def test_a_backfill_over_three_hours_launched_through_graphql_succeeds(
    dagster_ui: httpx.Client, settings: Settings
) -> None:
    current = floor_hour(datetime.now(UTC))
    keys = [partition_key(current - timedelta(hours=n)) for n in (4, 3, 2)]  # closed hours: the last may be open
    launched = graphql(dagster_ui, LAUNCH_BACKFILL, params={
        "partitionNames": keys,
        "assetSelection": [{"path": ["raw_events_archive"]}, {"path": ["rollups_hourly"]}],
        "title": "test backfill",
        # This test is about launching a backfill from the UI's API, not about the restatement's guards, which
        # have their own tests (test_restatement_under_load.py): an hour counts as closed only once the stream
        # has processed events 10 minutes past its end, which a session that has sent no events yet never
        # reaches, so the runs say what an operator backfilling a quiet system would.
        "tags": [{"key": "lakehouse/allow_open_hour", "value": "true"},
                 {"key": "lakehouse/allow_removals", "value": "true"}],
    })["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    started = time.perf_counter()
    state: dict[str, Any] = {}

    def finished() -> bool:
        state.update(graphql(dagster_ui, BACKFILL, id=backfill_id)["partitionBackfillOrError"])
        return state.get("status") in DONE

    wait_for(finished, 900, "the backfill's runs", interval=3)
    print(f"backfill of {len(keys)} hours finished in {time.perf_counter() - started:.1f}s: "
          f"{[(r['id'][:8], r['status']) for r in state['runs']]}")
    assert state["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
    assert state["runs"] and all(run["status"] == "SUCCESS" for run in state["runs"]), state["runs"]
    run_partitions = {t["value"] for run in state["runs"] for t in run["tags"] if t["key"] == "dagster/partition"}
    assert run_partitions == set(keys)
    for key in keys:
        assert archived_hour(settings, partition_hour(key)) is not None, f"{key} was not archived"
