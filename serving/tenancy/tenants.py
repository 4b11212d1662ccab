"""Tenants and their API keys, kept in the hot store's control-plane tables (``007_tenants_and_keys.sql``).

The tables live in ClickHouse beside the data so that every API replica and the CLI see one state
without another database to run. They are tiny and change rarely: each change inserts a new row
version (ReplacingMergeTree) and reads use FINAL, so there are no UPDATEs and no lost writes between
replicas. A key is shown once when it is issued and stored only as its sha256: keys are 256 random
bits, so a fast unsalted hash cannot be brute-forced and lets a request be looked up by its hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.events import format_ts
from common.hot_store import HotStore
from common.sql_files import sql_sections

TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ROLES = ("tenant", "admin")
KEY_PREFIX = "lhk_"


class DirectoryError(ValueError):
    """A tenant or key request that cannot be done as asked (the message says why); ``status`` for HTTP."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


SQL = sql_sections("clickhouse/queries/tenants.sql")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new key and its public prefix (``lhk_`` + 12 hex): the prefix names the key in lists and revocation."""
    prefix = KEY_PREFIX + secrets.token_hex(6)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created: datetime
    disabled: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created": format_ts(self.created), "disabled": self.disabled}


@dataclass(frozen=True)
class ApiKey:
    key_hash: str
    prefix: str
    tenant: str
    role: str
    rate_per_second: float
    burst: int
    created: datetime
    revoked: bool

    def as_dict(self) -> dict[str, Any]:
        """What an admin may see again: everything but the hash."""
        return {"prefix": self.prefix, "tenant": self.tenant, "role": self.role,
                "rate_per_second": self.rate_per_second, "burst": self.burst, "created": format_ts(self.created),
                "revoked": self.revoked}


class TenantDirectory:
    """Reads and changes tenants and keys through the hot-store interface (no caching here: see serving.auth)."""

    def __init__(self, store: HotStore) -> None:
        self._store = store

    def tenants(self) -> list[Tenant]:
        rows = self._store.query_arrow(SQL["tenants"]).to_pylist()
        return [Tenant(r["id"], r["name"], r["created"], bool(r["disabled"])) for r in rows]

    def api_keys(self) -> list[ApiKey]:
        rows = self._store.query_arrow(SQL["keys"]).to_pylist()
        return [ApiKey(r["key_hash"], r["prefix"], r["tenant"], r["role"], r["rate_per_second"], r["burst"],
                       r["created"], bool(r["revoked"])) for r in rows]

    def tenant(self, tenant_id: str) -> Tenant:
        for tenant in self.tenants():
            if tenant.id == tenant_id:
                return tenant
        raise DirectoryError(f"no tenant {tenant_id!r}; create it first (POST /v1/admin/tenants)", 404)

    def create_tenant(self, tenant_id: str, name: str = "") -> Tenant:
        if not TENANT_ID.match(tenant_id or ""):
            raise DirectoryError(f"tenant id {tenant_id!r} must be 1-64 letters, digits, '_', '.' or '-', starting "
                                 "with a letter or digit")
        if any(t.id == tenant_id for t in self.tenants()):
            raise DirectoryError(f"tenant {tenant_id!r} exists already", 409)
        tenant = Tenant(tenant_id, name or tenant_id, datetime.now(UTC), False)
        self._put_tenant(tenant)
        return tenant

    def set_disabled(self, tenant_id: str, disabled: bool) -> Tenant:
        current = self.tenant(tenant_id)
        changed = Tenant(current.id, current.name, current.created, disabled)
        self._put_tenant(changed)
        return changed

    def issue_key(self, tenant_id: str, role: str, rate_per_second: float, burst: int) -> tuple[str, ApiKey]:
        """A new key of ``tenant_id`` (which must exist and be enabled); the clear key is returned only here."""
        if role not in ROLES:
            raise DirectoryError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not rate_per_second > 0 or burst < 1:
            raise DirectoryError("rate_per_second must be > 0 and burst >= 1")
        if self.tenant(tenant_id).disabled:
            raise DirectoryError(f"tenant {tenant_id!r} is disabled; no keys can be issued for it", 409)
        key, prefix = generate_key()
        record = ApiKey(hash_key(key), prefix, tenant_id, role, float(rate_per_second), int(burst),
                        datetime.now(UTC), False)
        self._put_key(record)
        return key, record

    def revoke(self, prefix: str) -> ApiKey:
        matches = [k for k in self.api_keys() if k.prefix == prefix]
        if not matches:
            raise DirectoryError(f"no API key with prefix {prefix!r} (list them: GET /v1/admin/tenants/<id>/keys)", 404)
        revoked = [ApiKey(k.key_hash, k.prefix, k.tenant, k.role, k.rate_per_second, k.burst, k.created, True)
                   for k in matches]
        for record in revoked:
            self._put_key(record)
        return revoked[0]

    def _put_tenant(self, tenant: Tenant) -> None:
        self._store.command(SQL["put_tenant"], {
            "id": tenant.id, "name": tenant.name, "created": _naive(tenant.created), "disabled": int(tenant.disabled),
            "version": _version()})

    def _put_key(self, key: ApiKey) -> None:
        self._store.command(SQL["put_key"], {
            "key_hash": key.key_hash, "prefix": key.prefix, "tenant": key.tenant, "role": key.role,
            "rate_per_second": key.rate_per_second, "burst": key.burst, "created": _naive(key.created),
            "revoked": int(key.revoked), "version": _version()})


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


def _version() -> int:
    """Row version: microseconds since the epoch, so the latest change wins on every replica."""
    return time.time_ns() // 1000
