"""API-key authentication: who is calling, which tenant they are bound to, and their rate limit.

Every data endpoint obtains its tenant through ``tenant_dependency``: a tenant key is bound to its own
tenant (naming another one is a 403), the admin key may name any tenant with ``?tenant=``. Keys come as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Each process keeps a copy of the key table
(requests do not query the hot tier, and a flood of made-up keys costs nothing) and reloads it in the
background once it is ``auth_cache_seconds`` old, answering from the copy meanwhile; a revoked key or
a disabled tenant therefore stops working on every replica within ``auth_cache_seconds`` plus one
reload, and at once on the replica that made the change. If the hot tier cannot be read, the last
copy stays in use (retried every second): ingestion and cached answers keep working while the hot
node restarts.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool

from common.settings import Settings
from serving.tenancy.rate_limit import RateLimiter
from serving.tenancy.tenants import ApiKey, Tenant, TenantDirectory, hash_key

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
SECURITY_SCHEMES = {  # how OpenAPI (and the /docs page's Authorize button) learns how to send a key
    "HTTPBearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`"},
    "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`X-API-Key: <API key>`"},
}
RELOAD_RETRY_SECONDS = 1.0  # after the key table could not be read, the next attempt
_HOW_TO_SEND = "send `Authorization: Bearer <key>` or `X-API-Key: <key>`"


NO_KEY = f"an API key is required: {_HOW_TO_SEND}"
UNKNOWN_KEY = ("unknown or revoked API key (or its tenant is disabled); ask an admin for a key: "
               "`lakehouse tenants key create <tenant>`")


class AuthError(Exception):
    """Answered as ``{"error": message}`` with ``status`` (401, 403, 429, 503) and extra headers
    (``serving.errors``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def keys_sent(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The keys a request or WebSocket handshake sends: ``Authorization: Bearer`` and ``X-API-Key``."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
    return bearer, headers.get("x-api-key") or None


def bearer_headers(key: str) -> dict[str, str]:
    """Request headers that authenticate with ``key`` (for the demo, benchmarks, tests and the CLI)."""
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: ``tenant`` None means an admin, who may name any tenant."""

    key_id: str  # a key's public prefix, or "settings" for LAKEHOUSE_ADMIN_KEY
    role: str
    tenant: str | None
    rate_per_second: float | None = None  # None: not rate limited
    burst: int = 0


def resolve_tenant(caller: Caller, named: Sequence[str]) -> str:
    """The tenant a request reads or writes: a tenant key's own, or the one an admin names (else default).

    ``named`` holds every ``tenant`` parameter of the request, so a repeated parameter cannot smuggle a
    second tenant past the check."""
    names = {n for n in named if n}
    if caller.tenant is not None:
        others = sorted(names - {caller.tenant})
        if others:
            raise AuthError(403, f"this API key belongs to tenant {caller.tenant!r} and cannot access tenant "
                                 f"{others[0]!r}; omit `tenant` or use a key of {others[0]!r}")
        return caller.tenant
    if len(names) > 1:
        raise AuthError(400, f"name one tenant, not {len(names)} ({', '.join(sorted(names))})")
    return names.pop() if names else DEFAULT_TENANT


def callers_by_hash(keys: Sequence[ApiKey], tenants: Sequence[Tenant]) -> dict[str, Caller]:
    """The usable keys: not revoked, and (for tenant keys) of an existing tenant that is not disabled."""
    enabled = {t.id for t in tenants if not t.disabled}
    out = {}
    for key in keys:
        if key.revoked or (key.role != "admin" and key.tenant not in enabled):
            continue
        tenant = None if key.role == "admin" else key.tenant
        out[key.key_hash] = Caller(key.prefix, key.role, tenant, key.rate_per_second, key.burst)
    return out


class ApiKeyAuth:
    """Authenticates requests against the key table (cached) and applies each key's rate limit."""

    def __init__(self, settings: Settings, directory: TenantDirectory, limiter: RateLimiter,
                 counters: dict[str, int]) -> None:
        self.settings = settings
        self.directory = directory
        self.limiter = limiter
        self._counters = counters
        self._callers: dict[str, Caller] | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._stale_logged = False
        self._invalidated = False
        self._generation = 0  # changes made through this process (``invalidate``)
        self._refresh: asyncio.Task[None] | None = None
        self._retry_at = 0.0  # after a failed reload, the next one not before this (monotonic)
        self._last_error = ""
        self.caller_dependency, self.tenant_dependency, self.bound_tenant_dependency, self.admin_dependency = (
            self._dependencies())

    def invalidate(self) -> None:
        """Forget the cached key table (after a change made through this process): the next request reloads it."""
        self._invalidated = True
        self._generation += 1

    async def _table(self) -> dict[str, Caller]:
        """The key table. Past ``auth_cache_seconds`` the copy keeps answering while one background task reloads
        it, so no request waits for the hot tier (nor fails while the hot node restarts); a request waits only
        when there is no copy yet or this process changed a key (``invalidate``)."""
        callers = self._callers
        if callers is not None and not self._invalidated:
            now = time.monotonic()
            if (now - self._loaded_at >= self.settings.auth_cache_seconds and self._refresh is None
                    and now >= self._retry_at):
                self._refresh = asyncio.get_running_loop().create_task(self._refresh_in_background())
            return callers
        async with self._lock:  # one reload however many requests arrive at once
            if self._callers is not None and not self._invalidated:
                return self._callers
            if self._callers is None and time.monotonic() < self._retry_at:
                raise AuthError(503, f"cannot read the API keys from the hot tier ({self._last_error}); retry shortly")
            return await self._reload()

    async def _table_for_unknown_key(self) -> dict[str, Caller]:
        """The key table for a key the copy does not hold: reloaded now (the request waits) when the copy is
        ``auth_cache_seconds`` old, so a key created by another process works within that time, as a revoked
        one stops; a younger copy answers as it is, so a flood of made-up keys costs at most one reload per
        ``auth_cache_seconds``. While the store cannot be read, the copy (or the 503) as for any request."""
        async with self._lock:
            callers = self._callers
            fresh = time.monotonic() - self._loaded_at < self.settings.auth_cache_seconds
            if callers is not None and ((fresh and not self._invalidated) or time.monotonic() < self._retry_at):
                return callers
            return await self._reload()

    async def _refresh_in_background(self) -> None:
        try:
            async with self._lock:
                await self._reload()
        except AuthError:  # no copy at all: requests answer 503 themselves
            pass
        finally:
            self._refresh = None

    async def _reload(self) -> dict[str, Caller]:
        """Load the key table (called under the lock); when the store fails the last copy stays in use and the
        next attempt waits ``RELOAD_RETRY_SECONDS``, so a hot node that is down costs one failed call a second."""
        generation = self._generation
        try:
            keys, tenants = await run_in_threadpool(lambda: (self.directory.api_keys(), self.directory.tenants()))
        except Exception as exc:  # any store failure: keep the last copy or answer 503
            self._counters["auth_table_stale"] = self._counters.get("auth_table_stale", 0) + 1
            self._retry_at, self._last_error = time.monotonic() + RELOAD_RETRY_SECONDS, str(exc)
            self._invalidated = False  # a change made here while the store is unreachable cannot be read back
            if self._callers is None:
                raise AuthError(503, f"cannot read the API keys from the hot tier ({exc}); retry shortly") from exc
            if not self._stale_logged:
                log.warning("cannot reload the API keys, the last copy stays in use: %s", exc)
                self._stale_logged = True
            return self._callers
        self._callers, self._loaded_at, self._stale_logged = callers_by_hash(keys, tenants), time.monotonic(), False
        self._invalidated = self._generation != generation  # a change made while this read ran: read again
        return self._callers

    def _reject(self, status: int, message: str, headers: dict[str, str] | None = None) -> AuthError:
        self._counters["auth_rejected"] = self._counters.get("auth_rejected", 0) + 1
        return AuthError(status, message, headers)

    async def authenticate(self, bearer: str | None, header: str | None) -> Caller:
        if bearer and header and bearer != header:
            raise self._reject(400, "two different API keys were sent (Authorization and X-API-Key); send one")
        key = bearer or header
        if not key:
            raise self._reject(401, NO_KEY, {"WWW-Authenticate": "Bearer"})
        admin = self.settings.admin_key
        if admin and hmac.compare_digest(key.encode(), admin.encode()):
            return Caller("settings", "admin", None)
        hashed = hash_key(key)
        caller = (await self._table()).get(hashed) or (await self._table_for_unknown_key()).get(hashed)
        if caller is None:
            raise self._reject(401, UNKNOWN_KEY, {"WWW-Authenticate": "Bearer"})
        if caller.rate_per_second is not None:
            decision = await self.limiter.take(caller.key_id, caller.rate_per_second, caller.burst)
            if not decision.allowed:
                raise AuthError(429, f"rate limit of key {caller.key_id} exceeded ({caller.rate_per_second:g} "
                                     f"requests/s, burst {caller.burst}); retry after {decision.retry_after_s} s",
                                {"Retry-After": str(decision.retry_after_s)})
        return caller

    async def charge(self, caller: Caller | None, extra_tokens: int, why: str) -> None:
        """Take ``extra_tokens`` more from the caller's bucket (the request's own token is already taken), for
        a request that costs several queries; 429 when the bucket does not hold them."""
        if caller is None or caller.rate_per_second is None or extra_tokens <= 0:
            return
        decision = await self.limiter.take(caller.key_id, caller.rate_per_second, caller.burst, extra_tokens)
        if not decision.allowed:
            raise AuthError(429, f"rate limit of key {caller.key_id} exceeded: {why} costs {extra_tokens + 1} tokens "
                                 f"({caller.rate_per_second:g} requests/s, burst {caller.burst}); retry after "
                                 f"{decision.retry_after_s} s", {"Retry-After": str(decision.retry_after_s)})

    async def refusal(self, bearer: str | None, header: str | None) -> str | None:
        """Why a request must be refused before its body is read (no key, or none of its keys is known), or
        None. A cheap look-up (no rate-limit charge); the route's dependency still does the full check. When
        the key table cannot be read the answer is None: the route then answers 503 as usual."""
        keys = [k for k in (bearer, header) if k]
        if not keys:
            self._counters["auth_rejected"] = self._counters.get("auth_rejected", 0) + 1
            return NO_KEY
        admin = self.settings.admin_key
        if admin and any(hmac.compare_digest(k.encode(), admin.encode()) for k in keys):
            return None
        try:
            table = await self._table()
        except AuthError:
            return None
        hashed = [hash_key(k) for k in keys]
        if any(h in table for h in hashed):
            return None
        table = await self._table_for_unknown_key()
        if any(h in table for h in hashed):
            return None
        self._counters["auth_rejected"] = self._counters.get("auth_rejected", 0) + 1
        return UNKNOWN_KEY

    async def still_valid(self, key: str) -> bool:
        """Whether ``key`` would still be let in (not revoked, tenant enabled), without charging its rate
        limit: open live connections ask this every interval and close once it is no longer so. While the
        key table cannot be read at all, open connections are let be (as requests use the last copy)."""
        admin = self.settings.admin_key
        if admin and hmac.compare_digest(key.encode(), admin.encode()):
            return True
        try:
            return hash_key(key) in await self._table()
        except AuthError:
            return True

    def _dependencies(self) -> tuple[Callable[..., Any], ...]:
        # The keys are read from the headers here rather than through FastAPI's security classes as
        # sub-dependencies, which cost about 60 µs of every request (as much as the cached answer's lookup);
        # ``document_key_security`` puts the same schemes into the OpenAPI schema.
        async def caller(request: Request) -> Caller:
            known = getattr(request.state, "caller", None)
            if known is not None:  # several dependencies of one request authenticate (and charge) it once
                return known
            who = await self.authenticate(*keys_sent(request.headers))
            request.state.caller = who  # for routes that charge more than one token or count streams per key
            return who

        async def tenant(
            request: Request,
            tenant: str | None = Query(None, description="the tenant to read: a tenant key's own (may be omitted); "
                                                         "the admin key may name any tenant (default `default`)"),
        ) -> str:
            return resolve_tenant(await caller(request), request.query_params.getlist("tenant"))

        async def bound_tenant(request: Request) -> str | None:
            return (await caller(request)).tenant

        async def admin(request: Request) -> Caller:
            who = await caller(request)
            if who.role != "admin":
                raise self._reject(403, "this endpoint needs an admin key")
            return who

        return caller, tenant, bound_tenant, admin

    async def close(self) -> None:
        await self.limiter.close()


def _depends_on(dependant: Dependant, calls: set[Any]) -> bool:
    return any(d.call in calls or _depends_on(d, calls) for d in dependant.dependencies)


def document_key_security(app: FastAPI, auth: ApiKeyAuth) -> None:
    """Every operation that authenticates with an API key says so in the OpenAPI schema, with the two ways to
    send one (the key dependencies read the headers themselves, so FastAPI cannot tell)."""
    calls = {auth.caller_dependency, auth.tenant_dependency, auth.bound_tenant_dependency, auth.admin_dependency}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        for route in iter_route_contexts(app.routes):  # every route, with its routers' dependencies
            if isinstance(route.original_route, APIRoute) and _depends_on(route.dependant, calls):
                for method in route.methods or ():
                    operation = schema["paths"].get(route.path_format, {}).get(method.lower())
                    if operation is not None:
                        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
