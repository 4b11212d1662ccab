"""POST /events: valid events published, invalid ones dead-lettered with their reason, bad bodies refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.component.harness import InMemoryPublisher


def _event(tenant: str, **overrides: object) -> dict[str, object]:
    return {"event": "page_view", "timestamp": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
            "user_id": "u1", "tenant": tenant, "event_id": uuid.uuid4().hex, "country": "DE", **overrides}


def test_valid_events_are_published_and_invalid_ones_dead_lettered_by_index(
        client: TestClient, publisher: InMemoryPublisher) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    good = [_event(tenant), _event(tenant, event="click")]
    bad = _event(tenant, timestamp="yesterday")
    answer = client.post("/events", json=[good[0], bad, good[1]])
    assert answer.status_code == 200
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["errors"][0]["index"] == 1 and "timestamp" in body["errors"][0]["reason"]
    published = [e for e in publisher.events if e["tenant"] == tenant]
    assert sorted(e["event_id"] for e in published) == sorted(e["event_id"] for e in good)
    dead = [d for d in publisher.dead_letters if d["event"] is bad or d["event"] == bad]
    assert len(dead) == 1 and dead[0]["reason"] == body["errors"][0]["reason"]


def test_a_body_that_cannot_be_a_batch_is_refused_whole(client: TestClient, settings) -> None:
    not_json = client.post("/events", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    not_array = client.post("/events", json={"event": "page_view"})
    assert not_array.status_code == 422 and "JSON array" in not_array.json()["error"]
    too_many = client.post("/events", json=[{}] * (settings.ingest_max_events + 1))
    assert too_many.status_code == 413 and "limit" in too_many.json()["error"]
    too_big = client.post("/events", content=b"[" + b" " * settings.ingest_max_bytes + b"]")
    assert too_big.status_code == 413 and "bytes" in too_big.json()["error"]


def test_a_tenant_key_writes_its_own_tenant_and_dead_letters_events_naming_another(
        client: TestClient, keys: dict[str, str], publisher: InMemoryPublisher) -> None:
    own, other = _event("", user_id="u-own"), _event("globex", user_id="u-other")
    own.pop("tenant")
    answer = client.post("/events", json=[own, other], headers={"Authorization": f"Bearer {keys['acme']}"})
    assert answer.status_code == 200 and (answer.json()["accepted"], answer.json()["rejected"]) == (1, 1)
    assert "not the tenant of this API key" in answer.json()["errors"][0]["reason"]
    assert next(e for e in publisher.events if e["event_id"] == own["event_id"])["tenant"] == "acme"


def test_ingestion_needs_a_known_key(client: TestClient) -> None:
    missing = client.post("/events", json=[], headers={"Authorization": ""})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    unknown = client.post("/events", json=[], headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.json()["error"]


def test_nothing_is_accepted_while_kafka_is_unavailable(client: TestClient, publisher: InMemoryPublisher) -> None:
    publisher.unavailable = "Kafka is not reachable — run `lakehouse stack up`; nothing was accepted"
    try:
        answer = client.post("/events", json=[_event("acme")], params={"sync": "true"})
    finally:
        publisher.unavailable = None
    assert answer.status_code == 503 and "nothing was accepted" in answer.json()["error"]
