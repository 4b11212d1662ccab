"""Tenants and API keys through the admin API: admin key only; changes take effect at once."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient


def _id() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_tenants_are_created_listed_and_disabled_and_their_keys_stop_working(client: TestClient) -> None:
    tenant = _id()
    made = client.post("/v1/admin/tenants", json={"id": tenant, "name": "Initech"})
    assert made.status_code == 201 and made.json()["name"] == "Initech" and made.json()["disabled"] is False
    assert client.post("/v1/admin/tenants", json={"id": tenant}).status_code == 409
    assert client.post("/v1/admin/tenants", json={"id": "no spaces"}).status_code == 400
    assert tenant in [t["id"] for t in client.get("/v1/admin/tenants").json()["tenants"]]

    key = client.post(f"/v1/admin/tenants/{tenant}/keys").json()["key"]
    as_tenant = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/dashboards", headers=as_tenant).status_code == 200

    disabled = client.delete(f"/v1/admin/tenants/{tenant}")
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert client.get("/v1/dashboards", headers=as_tenant).status_code == 401
    refused = client.post(f"/v1/admin/tenants/{tenant}/keys")
    assert refused.status_code == 409 and "disabled" in refused.json()["error"]
    assert client.delete(f"/v1/admin/tenants/{_id()}").status_code == 404


def test_keys_are_issued_once_listed_by_prefix_and_revoked(client: TestClient) -> None:
    tenant = _id()
    client.post("/v1/admin/tenants", json={"id": tenant})
    issued = client.post(f"/v1/admin/tenants/{tenant}/keys", json={"rate_per_second": 5, "burst": 10})
    assert issued.status_code == 201
    key = issued.json()
    assert key["key"].startswith(f"lhk_{key['prefix'].removeprefix('lhk_')}") and key["tenant"] == tenant
    assert (key["rate_per_second"], key["burst"], key["role"]) == (5.0, 10, "tenant")
    listed = client.get(f"/v1/admin/tenants/{tenant}/keys").json()["keys"]
    assert [k["prefix"] for k in listed] == [key["prefix"]] and "key" not in listed[0]
    assert client.get(f"/v1/admin/tenants/{_id()}/keys").status_code == 404
    assert client.post(f"/v1/admin/tenants/{tenant}/keys", json={"role": "root"}).status_code == 400
    assert client.post(f"/v1/admin/tenants/{tenant}/keys", json={"burst": 0}).status_code == 422

    as_tenant = {"Authorization": f"Bearer {key['key']}"}
    assert client.get("/v1/alerts", headers=as_tenant).status_code == 200
    revoked = client.delete(f"/v1/admin/keys/{key['prefix']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert client.get("/v1/alerts", headers=as_tenant).status_code == 401
    assert client.delete("/v1/admin/keys/lhk_000000000000").status_code == 404


def test_the_admin_api_needs_the_admin_key(client: TestClient, keys: dict[str, str]) -> None:
    tenant_key = client.get("/v1/admin/tenants", headers={"Authorization": f"Bearer {keys['acme']}"})
    assert tenant_key.status_code == 403 and "admin key" in tenant_key.json()["error"]
    assert client.get("/v1/admin/tenants", headers={"Authorization": ""}).status_code == 401
    two = client.get("/v1/admin/tenants", headers={"X-API-Key": keys["acme"]})  # and the admin's Bearer
    assert two.status_code == 400 and "two different API keys" in two.json()["error"]


def test_the_admin_api_answers_503_while_the_hot_node_is_down(down_client: TestClient) -> None:
    answer = down_client.get("/v1/admin/tenants")
    assert answer.status_code == 503 and "not reachable" in answer.json()["error"]
