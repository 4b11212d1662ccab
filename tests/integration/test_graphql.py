"""GraphQL on the real stack (Kafka → stream → hot tier, the API process): one document asking for a time
series, a breakdown, a top-N and a dashboard answers exactly what the REST endpoints answer for the same
tenant, which both equal the events sent; the product-analytics and KPI fields equal their endpoints; and
the schema fuzzer finds no document answered with a 5xx. The checks are those of the component tier
(``tests/graphql_checks.py``), here against the served API."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from common.hot_store import HotStore
from common.settings import Settings
from tests.graphql_checks import (
    FUZZER_KEY,
    analytics_equal_rest,
    kpis_equal_rest,
    one_document_equals_rest,
    run_graphql_fuzzer,
)
from tests.integration.dashboard_data import TenantData, tenant_with_events

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = 4  # per operation: about 30 operations, the run stays within about a minute


@pytest.fixture(scope="module")
def data(api: httpx.Client, hot: HotStore) -> TenantData:
    return tenant_with_events(api, hot, f"gql-{uuid.uuid4().hex[:8]}", n=800, seed=73)


@pytest.fixture
def client(settings: Settings, data: TenantData) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=settings.api_url, headers=data.headers(), timeout=60) as client:
        yield client


def _graph(client: httpx.Client):
    def graph(document: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer = client.post("/graphql", json={"query": document, "variables": variables})
        assert answer.status_code == 200, answer.text
        return answer.json()
    return graph


def _window() -> dict[str, str]:
    """A closed window around every event sent (the last two minutes, disordered by up to two more)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return {"from": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            "to": (now + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")}


def test_one_document_answers_exactly_what_the_rest_endpoints_answer(client: httpx.Client, data: TenantData) -> None:
    window = _window()
    widgets = [{"id": "n", "chart": "number", "query": {"metrics": ["events", "revenue"], **window}},
               {"id": "p", "chart": "pie", "query": {"metrics": ["page_views"], "dimensions": ["country"], **window}}]
    saved = client.post("/v1/dashboards", json={"name": "fixed window", "widgets": widgets})
    assert saved.status_code == 201, saved.text
    answered = one_document_equals_rest(_graph(client), client, window, saved.json()["id"])

    mobile_views = Counter(e["country"] for e in data.matching(event="page_view", device="mobile"))
    assert {s["group"]["country"]: sum(v or 0 for _, v in s["points"]) for s in answered["timeseries"]["series"]} \
        == mobile_views and mobile_views
    pages = Counter(e["page"] for e in data.events if e["country"] in ("US", "DE"))
    assert {r["page"]: r["value"] for r in answered["breakdown"]["rows"]} == pages and pages
    assert answered["dashboard_data"]["widgets"][0]["rows"][0][0] == len(data.matching(device="mobile"))
    assert answered["topn"]["rows"]


def test_product_analytics_and_kpi_fields_equal_their_endpoints(client: httpx.Client, data: TenantData) -> None:
    window = _window()
    steps = [{"event": "page_view"}, {"event": "click"}, {"event": "purchase"}]
    answered = analytics_equal_rest(_graph(client), client, window, steps)
    assert answered["funnel"]["steps"][0]["count"] == len({e["user_id"] for e in data.matching(event="page_view")})
    made = client.post("/v1/kpis", json={"name": "views_per_event", "formula": "page_views / events"})
    assert made.status_code == 201, made.text
    by_country = kpis_equal_rest(_graph(client), client, "views_per_event", window)["by_country"]
    views, events = Counter(e["country"] for e in data.matching(event="page_view")), data.totals("country")
    assert {r[0]: r[1] for r in by_country["rows"]} == pytest.approx({c: views[c] / n for c, n in events.items()})


def test_no_generated_document_makes_graphql_answer_5xx(settings: Settings, api: httpx.Client) -> None:
    tenant = f"gql-fuzz-{uuid.uuid4().hex[:8]}"
    api.post("/v1/admin/tenants", json={"id": tenant, "name": tenant}).raise_for_status()
    key = api.post(f"/v1/admin/tenants/{tenant}/keys", json=FUZZER_KEY).raise_for_status().json()["key"]
    run_graphql_fuzzer(settings.api_url, key, FUZZ_EXAMPLES)
