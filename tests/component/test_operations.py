"""Operations endpoints, the API's own documentation and the web dashboard's files."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.component.seed import Seeded


def test_health_says_ok_while_the_hot_tier_answers(client: TestClient) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "hot_store": "ok", "embedded": True}


def test_health_says_degraded_with_503_while_the_hot_node_is_down(down_client: TestClient) -> None:
    answer = down_client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "degraded" and "not reachable" in answer.json()["hot_store"]


def test_stats_count_queries_per_tier_and_cache_outcomes(client: TestClient, data: dict[str, Seeded]) -> None:
    before = client.get("/stats").json()
    assert client.get("/v1/timeseries", params={"tenant": "acme", "metric": "events"}).status_code == 200
    after = client.get("/stats").json()
    assert after["tier_queries"]["hot"] == before["tier_queries"]["hot"] + 1
    assert after["cache"]["bypassed"] == before["cache"]["bypassed"] + 1  # no Redis: answered uncached


def test_metrics_are_prometheus_text_with_the_requests_counted_by_route(client: TestClient) -> None:
    client.get("/v1/catalog")
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert 'lakehouse_http_requests_total{method="GET",route="/v1/catalog",status="200"}' in answer.text


def test_the_api_describes_itself_in_openapi_and_its_two_documentation_pages(client: TestClient) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert {"/v1/query", "/v1/dashboards/{dashboard_id}/data", "/events"} <= set(spec.json()["paths"])
    for page in ("/docs", "/redoc"):
        answer = client.get(page)
        assert answer.status_code == 200 and "/openapi.json" in answer.text
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_the_web_dashboard_and_its_chart_library_are_served(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and "vendor/plotly.min.js" in page.text
    library = client.get("/ui/vendor/plotly.min.js")
    assert library.status_code == 200 and library.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/no-such-file.js").status_code == 404
