"""User profiles: upserted one by one, in batches and from CSV and Parquet files, versioned, and joined at query
time as ``profile.<property>`` in funnel step filters and breakdowns and retention breakdowns, in both engines,
equal to the truth computed over the events enriched with each user's newest profile."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import tests.analytics_truth as truth
from common.hot_store import HotStore
from common.settings import Settings
from tests.analytics_clickstream import FUNNEL, clickstream, lay_hot, lay_lake

TENANT = "profiled-co"
PLANS = ("free", "pro", "team")


@pytest.fixture(scope="module")
def stream(client: TestClient, settings: Settings, hot: HotStore) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    recent = clickstream(TENANT, "h", now - timedelta(days=6), 5, seed=21).events
    old = clickstream(TENANT, "l", now - timedelta(days=200), 30, seed=22).events
    lay_hot(hot, recent)
    lay_lake(settings, old, TENANT)
    users = sorted({e["user_id"] for e in recent + old})
    plans = {u: PLANS[i % 3] for i, u in enumerate(users) if i % 7}  # every 7th user has no profile
    params = {"tenant": TENANT}
    # four ways in: one PUT, a JSON batch, a CSV file, a Parquet file (each a quarter of the users)
    items = sorted(plans.items())
    quarter = len(items) // 4
    first, *_ = items
    assert client.put(f"/v1/profiles/{first[0]}", params=params,
                      json={"properties": {"plan": "draft"}}).status_code == 200
    assert client.put(f"/v1/profiles/{first[0]}", params=params,
                      json={"properties": {"plan": first[1], "campaign": "spring"}}).status_code == 200
    batch = client.post("/v1/profiles", params=params, json={
        "profiles": [{"user_id": u, "properties": {"plan": p}} for u, p in items[1:2 * quarter]]})
    assert batch.status_code == 200 and batch.json() == {"upserted": 2 * quarter - 1}, batch.text
    csv_text = "user_id,plan\n" + "".join(f"{u},{p}\n" for u, p in items[2 * quarter:3 * quarter])
    loaded = client.post("/v1/profiles/import", params={**params, "format": "csv"}, content=csv_text.encode(),
                         headers={"Content-Type": "text/csv"})
    assert loaded.status_code == 200 and loaded.json() == {"upserted": quarter}, loaded.text
    sink = io.BytesIO()
    rest = items[3 * quarter:]
    pq.write_table(pa.table({"user_id": [u for u, _ in rest], "plan": [p for _, p in rest]}), sink)
    loaded = client.post("/v1/profiles/import", params={**params, "format": "parquet"}, content=sink.getvalue(),
                         headers={"Content-Type": "application/vnd.apache.parquet"})
    assert loaded.status_code == 200 and loaded.json() == {"upserted": len(rest)}, loaded.text
    return {"recent": recent, "old": old, "plans": plans, "first": first[0],
            "hot": (now - timedelta(days=5), now - timedelta(days=2)),
            "lake": (now - timedelta(days=199), now - timedelta(days=175))}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _enriched(events: list[dict[str, Any]], plans: dict[str, str]) -> list[dict[str, Any]]:
    return [{**e, "profile.plan": plans.get(e["user_id"], "")} for e in events]


def test_a_profile_is_versioned_and_merged(client: TestClient, stream: dict[str, Any]) -> None:
    got = client.get(f"/v1/profiles/{stream['first']}", params={"tenant": TENANT})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["version"] == 2 and body["properties"] == {"plan": stream["plans"][stream["first"]],
                                                           "campaign": "spring"}
    assert [v["properties"].get("plan") for v in body["versions"]] == [stream["plans"][stream["first"]], "draft"]
    assert client.get("/v1/profiles/nobody", params={"tenant": TENANT}).status_code == 404
    assert client.get(f"/v1/profiles/{stream['first']}", params={"tenant": "globex"}).status_code == 404
    bad = client.put("/v1/profiles/x", params={"tenant": TENANT}, json={"properties": {"Plan!": "x"}})
    assert bad.status_code == 400 and "property name" in bad.json()["error"]
    no_id = client.post("/v1/profiles/import", params={"tenant": TENANT}, content=b"id,plan\n1,pro\n")
    assert no_id.status_code == 400 and "user_id column" in no_id.json()["error"]
    client.put("/v1/profiles/temp", params={"tenant": TENANT}, json={"properties": {"plan": "x"}})
    assert client.delete("/v1/profiles/temp", params={"tenant": TENANT}).status_code == 204
    assert client.get("/v1/profiles/temp", params={"tenant": TENANT}).status_code == 404
    assert client.delete("/v1/profiles/temp", params={"tenant": TENANT}).status_code == 404


@pytest.mark.parametrize("where", ["hot", "lake"])
def test_funnels_break_down_and_filter_by_a_profile_property(client: TestClient, stream: dict[str, Any],
                                                             where: str) -> None:
    start, end = stream[where]
    events = _enriched(stream["recent" if where == "hot" else "old"], stream["plans"])
    span = {"from": _iso(start), "to": _iso(end)}
    got = client.post("/v1/funnels", params={"tenant": TENANT},
                      json={"steps": FUNNEL, "window": "1d", "breakdown": "profile.plan", **span})
    assert got.status_code == 200, got.text
    expected = truth.funnel(events, FUNNEL, start, end, window=timedelta(days=1), breakdown="profile.plan")
    assert {g["value"]: [s["count"] for s in g["steps"]] for g in got.json()["breakdown"]} == {
        value: [s["count"] for s in steps] for value, steps in expected["breakdown"].items()}
    assert {g["value"] for g in got.json()["breakdown"]} >= {"free", "pro", "team", ""}
    pro = [{**FUNNEL[0], "filters": [{"field": "profile.plan", "value": "pro"}]}, *FUNNEL[1:]]
    filtered = client.post("/v1/funnels", params={"tenant": TENANT}, json={"steps": pro, "window": "1d", **span})
    assert filtered.status_code == 200, filtered.text
    assert [s["count"] for s in filtered.json()["steps"]] == [
        s["count"] for s in truth.funnel(events, pro, start, end, window=timedelta(days=1))["steps"]]
    assert filtered.json()["steps"][0]["count"] > 0


def test_retention_breaks_down_by_a_profile_property(client: TestClient, stream: dict[str, Any]) -> None:
    start, end = stream["lake"]
    events = _enriched(stream["old"], stream["plans"])
    question = {"start_event": "page_view", "return_event": "page_view", "period": "week", "periods": 3}
    grid = client.post("/v1/retention", params={"tenant": TENANT}, json={
        **question, "breakdown": "profile.plan", "from": _iso(start), "to": _iso(end)})
    assert grid.status_code == 200, grid.text
    expected = truth.retention(events, start, end, breakdown="profile.plan", **question)
    assert {(c["cohort"], c["value"]): c["counts"] for c in grid.json()["cohorts"]} == {
        (k[0].date().isoformat(), k[1]): v for k, v in expected.items()}
    unknown = client.post("/v1/retention", params={"tenant": TENANT}, json={**question, "breakdown": "profile.Plan"})
    assert unknown.status_code == 400 and "profile.<property>" in unknown.json()["error"]
