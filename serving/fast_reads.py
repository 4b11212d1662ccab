"""Cached dashboard answers without FastAPI's parameter handling: the fast path of the cached GET routes.

A cached ``GET /v1/timeseries`` (``/breakdown``, ``/topn``) spent about half of its CPU in FastAPI solving
the route's dependencies and validating its ten query parameters, only to build the same cache key as the
last time the same URL was asked. This ASGI middleware answers such a request before routing: it
authenticates the caller (the same ``ApiKeyAuth.authenticate``, rate limit included), looks the raw query
string up in a table of URLs the full route has already answered, and answers a fresh cache entry itself.

Only what the full route has validated is ever in that table: the route records ``(path, raw query
string, caller's tenant binding) → cache key`` after it answered (any 4xx never gets there), and only for
questions whose key cannot change with time (a range that ends at a given ``to`` or a relative range, no
tenant KPI whose definition may change). Anything else — a URL not seen yet, an entry past its fresh
time (stale-while-revalidate), a miss, CSV, Redis unreachable — falls through to the full route, which
answers exactly as before (the caller is not authenticated or charged twice). A restatement drops the
entries from Redis, so the next request falls through and recomputes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from serving.cache import QueryCache
from serving.observability import ServingMetrics, request_fields
from serving.request_guard import presented_keys
from serving.tenancy.auth import ApiKeyAuth, AuthError

CACHED_GET_ROUTES = ("/v1/timeseries", "/v1/breakdown", "/v1/topn")
# URLs per process, the least recently asked dropped first. An entry holds ~650 bytes (the raw query string, the
# cache key and the dict's slot; tracemalloc in a soak), so at most ~2.7 MB. A dashboard that moves ``to`` with the
# clock asks a new URL at every refresh and never again: with 20,000 the table grew for an hour of such questions
# (5 a second) and was the hot node's steady Python growth in the 50-minute soak (docs/benchmarks.md, "Memory").
MAX_REMEMBERED = 4_096
REDIS_PAUSE_SECONDS = 1.0  # after Redis failed here, the full route alone asks it (no double wait)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UrlKey = tuple[str, bytes, str | None]  # (path, raw query string, the caller's tenant binding; None: admin)

# The URL of the request being answered by the full route after the fast path could not answer it: what
# ``FastCachedReads.remember`` files the route's cache key under.
_pending: ContextVar[UrlKey | None] = ContextVar("lakehouse_fast_read_pending", default=None)


class FastCachedReads:
    """The table of validated URLs and their cache keys, shared by the middleware and the query routes."""

    def __init__(self, cache: QueryCache, auth: ApiKeyAuth | None, metrics: ServingMetrics | None,
                 enabled: bool = True, paths: Iterable[str] = CACHED_GET_ROUTES,
                 max_remembered: int = MAX_REMEMBERED) -> None:
        self.cache = cache
        self.auth = auth
        self.metrics = metrics
        self.enabled = enabled and auth is not None  # keys off: the tenant comes from the query, not handled here
        self.paths = frozenset(paths)
        self._keys: OrderedDict[UrlKey, tuple[str, str]] = OrderedDict()  # URL → (cache key, tenant), oldest first
        self.max_remembered = max_remembered
        self._routes: dict[str, Any] = {}  # path → its route, as routing set it (the metrics' route label)
        self._redis_paused_until = 0.0
        self.answered = 0  # requests answered here (for tests and the benchmark)

    def remember(self, cache_key: str, tenant: str) -> None:
        """Called by a query route after it answered: the URL being served (if the fast path passed it on)
        now maps to ``cache_key``. Only for answers whose key is the same at every later request."""
        url = _pending.get()
        if url is None:
            return
        keys = self._keys
        while url not in keys and len(keys) >= self.max_remembered:
            keys.popitem(last=False)  # the least recently asked
        keys[url] = (cache_key, tenant)
        keys.move_to_end(url)

    @property
    def remembered(self) -> int:
        """How many URLs the table holds now."""
        return len(self._keys)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """The ASGI app that answers what it can and hands the rest to ``app``."""
        fast = self

        async def fast_cached_reads(scope: Scope, receive: Receive, send: Send) -> None:
            if (scope["type"] != "http" or scope["path"] not in fast.paths or scope["method"] != "GET"
                    or not fast.enabled):
                await app(scope, receive, send)
                return
            await fast._serve(app, scope, receive, send)

        return fast_cached_reads

    async def _serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"accept" and b"text/csv" in value:  # a CSV download: the full route decides
                await app(scope, receive, send)
                return
        started = time.perf_counter()
        assert self.auth is not None
        try:  # exactly the route's own key check (and rate-limit charge), done once for both paths
            caller = await self.auth.authenticate(*presented_keys(scope))
        except AuthError as exc:
            await JSONResponse(status_code=exc.status, content={"error": exc.message}, headers=exc.headers)(
                scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller  # the route's dependency finds it: not charged again
        url: UrlKey = (scope["path"], scope["query_string"], caller.tenant)
        known = self._keys.get(url)
        if known is not None:
            self._keys.move_to_end(url)  # asked again: kept longest
        found = None
        if known is not None and time.monotonic() >= self._redis_paused_until:
            try:
                found = await self.cache.fresh(known[0])
            except RedisError:
                self._redis_paused_until = time.monotonic() + REDIS_PAUSE_SECONDS
        if found is None:  # not seen, not fresh, or Redis unreachable: the full route answers (and files the URL)
            token = _pending.set(url)
            try:
                await app(scope, receive, send)
            finally:
                _pending.reset(token)
                if scope.get("route") is not None:  # what routing made of this path: the metrics' label
                    self._routes[scope["path"]] = scope["route"]
            return
        body, how = found
        scope["route"] = self._routes.get(scope["path"])  # the access log's and the metrics' route, as when routed
        request_fields()["tenant"] = known[1]
        self.answered += 1
        if self.metrics is not None:
            self.metrics.observe_query(scope["path"], "cache", time.perf_counter() - started)
        # the headers the route's Response(body, media_type="application/json", headers={"X-Cache": how}) sends
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"x-cache", how.encode()), (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
