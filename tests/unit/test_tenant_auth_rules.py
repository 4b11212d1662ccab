"""Pure rules of tenant binding: which tenant a request gets, which keys are usable, Retry-After, key format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.api import bind_tenant
from serving.tenancy.auth import AuthError, Caller, callers_by_hash, resolve_tenant
from serving.tenancy.rate_limit import retry_after_seconds
from serving.tenancy.tenants import SQL, ApiKey, Tenant, generate_key, hash_key

TENANT_A = Caller("lhk_aaaaaaaaaaaa", "tenant", "a", 5, 5)
ADMIN = Caller("settings", "admin", None)


def test_a_tenant_key_reads_its_own_tenant_whatever_it_omits():
    assert resolve_tenant(TENANT_A, []) == "a"
    assert resolve_tenant(TENANT_A, ["a"]) == "a"
    assert resolve_tenant(TENANT_A, [""]) == "a"


@pytest.mark.parametrize("named", [["b"], ["a", "b"], ["b", "a"], ["A"], ["a "], ["a' OR 1=1 --"]])
def test_a_tenant_key_naming_any_other_tenant_is_refused_with_403(named):
    with pytest.raises(AuthError) as caught:
        resolve_tenant(TENANT_A, named)
    assert caught.value.status == 403
    assert "belongs to tenant 'a'" in caught.value.message


def test_the_admin_names_one_tenant_or_gets_the_default():
    assert resolve_tenant(ADMIN, ["b"]) == "b"
    assert resolve_tenant(ADMIN, []) == "default"
    with pytest.raises(AuthError) as caught:
        resolve_tenant(ADMIN, ["a", "b"])
    assert caught.value.status == 400


def _key(tenant: str, role: str = "tenant", revoked: bool = False) -> ApiKey:
    key, prefix = generate_key()
    return ApiKey(hash_key(key), prefix, tenant, role, 5.0, 5, datetime.now(UTC), revoked)


def test_only_live_keys_of_enabled_tenants_authenticate():
    now = datetime.now(UTC)
    tenants = [Tenant("a", "A", now, False), Tenant("off", "Off", now, True)]
    live, revoked, disabled, orphan, admin = (_key("a"), _key("a", revoked=True), _key("off"), _key("gone"),
                                              _key("off", role="admin"))
    callers = callers_by_hash([live, revoked, disabled, orphan, admin], tenants)
    assert set(callers) == {live.key_hash, admin.key_hash}
    assert callers[live.key_hash].tenant == "a"
    assert callers[admin.key_hash].tenant is None  # an admin key is bound to no tenant


def test_generated_keys_are_distinct_and_their_prefix_names_them():
    keys = [generate_key() for _ in range(100)]
    assert len({k for k, _ in keys}) == 100
    for key, prefix in keys:
        assert key.startswith(prefix + "_") and len(prefix) == 16 and len(key) > 50
        assert len(hash_key(key)) == 64 and hash_key(key) != hash_key(prefix)


@pytest.mark.parametrize(("wait_ms", "seconds"), [(0, 1), (1, 1), (200, 1), (1000, 1), (1001, 2), (12_500, 13)])
def test_retry_after_is_whole_seconds_at_least_one(wait_ms, seconds):
    assert retry_after_seconds(wait_ms) == seconds


def test_ingestion_stamps_the_keys_tenant_and_rejects_another():
    event = {"event": "page_view", "timestamp": "2026-11-23T10:00:00Z", "user_id": 1}
    assert bind_tenant(event, "a")["tenant"] == "a"
    assert bind_tenant({**event, "tenant": "a"}, "a")["tenant"] == "a"
    assert bind_tenant({**event, "tenant": "b"}, None)["tenant"] == "b"  # admin: as sent
    with pytest.raises(ValueError, match="not the tenant of this API key"):
        bind_tenant({**event, "tenant": "b"}, "a")
    assert bind_tenant("not an object", "a") == "not an object"  # left for the validator to reject


def test_the_directory_statements_are_all_loaded():
    assert set(SQL) == {"tenants", "keys", "put_tenant", "put_key"}
