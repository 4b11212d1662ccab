"""What the component tier puts where the full stack has services, and how it watches the routes.

The app runs in this process against a real chDB hot store and a real Parquet lake in a temporary
folder; only the services it would reach over the network are replaced:

* Kafka: ``InMemoryPublisher`` keeps what ``POST /events`` publishes (and can refuse like an
  unreachable broker);
* Redis: not started. The cache answers uncached (``X-Cache: bypass``), rate limits fail open and the
  alert evaluator is off, which is how the app behaves while Redis is down;
* a hot node that answers slowly (``SlowHotStore``) or not at all (a Flight client to a closed port)
  for the 504 and 503 paths.

``RouteLog`` wraps the app and records which route answered each request with which status, so that
``test_route_coverage.py`` can fail when a route of the app is never exercised.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
import pyarrow as pa
from starlette.routing import Match

from common.hot_store import HotStore
from ingest.publisher import KafkaUnavailable


class InMemoryPublisher:
    """Kafka's part of ``POST /events``: keeps the events and dead letters it is handed.

    While ``unavailable`` holds a message it refuses every batch as ``EventPublisher`` does when no
    broker answers (the API must then accept nothing and answer 503)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.unavailable: str | None = None
        self._lock = threading.Lock()

    def publish(self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]], *,
                wait: bool = False) -> None:
        if self.unavailable is not None:
            raise KafkaUnavailable(self.unavailable)
        with self._lock:
            self.events.extend(events)
            self.dead_letters.extend(rejected)

    def close(self) -> None:
        pass


class SlowHotStore:
    """The real hot store behind a hot node that takes ``delay_s`` to answer each query."""

    def __init__(self, store: HotStore, delay_s: float) -> None:
        self._store = store
        self._delay_s = delay_s

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        time.sleep(self._delay_s)
        return self._store.query_arrow(sql, parameters)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self._store.command(sql, parameters)

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        self._store.insert_arrow(table, data, token)

    def close(self) -> None:
        pass  # the store belongs to the session


# --------------------------------------------------------------------------------------- routes


def http_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route of ``app``; a mount (static files) counts as its GET."""
    found: set[tuple[str, str]] = set()
    for route in _flat(app.routes):
        methods = getattr(route, "methods", None)
        if methods:
            found |= {(m, route.path) for m in methods if m != "HEAD"}
        else:
            found.add(("GET", route.path))
    return found


def _flat(routes: Sequence[Any]) -> Iterator[Any]:
    # FastAPI keeps an included router as one entry holding the router (``original_router``); older
    # versions copied its routes into the app's list. Either way every route comes out here.
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat(included.routes)
        else:
            yield route


@dataclass
class RouteLog:
    """The statuses each (method, route template) answered during the test session."""

    answered: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    def wrap(self, app: Any) -> Any:
        """``app`` recording, for each request, the route that matches it and the status it answered."""
        routes: list[Any] = []

        async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] not in ("http", "websocket"):
                await app(scope, receive, send)
                return
            request = {"type": scope["type"], "path": scope["path"], "method": scope.get("method", "GET"),
                       "root_path": ""}
            status: list[int] = []

            async def watch(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                elif message["type"] == "websocket.accept" and not status:  # a WebSocket: 101 once accepted
                    status.append(101)
                elif message["type"] == "websocket.close" and not status:  # refused before the handshake
                    status.append(403)
                await send(message)

            try:
                await app(scope, receive, watch)
            finally:
                routes[:] = routes or list(_flat(app.routes))
                key = _matching(routes, request)
                if key is not None and status:
                    self.answered.setdefault(key, set()).add(status[0])

        return recorded


def _matching(routes: list[Any], request: dict[str, Any]) -> tuple[str, str] | None:
    """(method, template) of the route that answers ``request``, as the router picks it (the first full
    match; else the first partial one, e.g. a path known for other methods)."""
    partial = None
    for route in routes:
        match, _ = route.matches(dict(request))
        if match == Match.FULL:
            return (request["method"] if getattr(route, "methods", None) else "GET", route.path)
        if match == Match.PARTIAL and partial is None:
            partial = (request["method"], route.path)
    return partial


# ------------------------------------------------------------------------------ server-sent events


@dataclass
class SseStream:
    status: int
    headers: dict[str, str]
    events: list[tuple[str, dict[str, Any]]]  # (event name, JSON data)


async def read_sse(app: Any, path: str, params: dict[str, Any], headers: dict[str, str], count: int,
                   timeout_s: float = 10.0) -> SseStream:
    """Open ``GET path`` as a browser's EventSource would, read ``count`` events, then disconnect.

    An in-process client has to drive the ASGI app itself here: the test clients wait for a response
    to end, and an event stream ends only when its client goes away."""
    query = urlencode(params, doseq=True).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
        "headers": [(b"host", b"testserver"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }
    gone = asyncio.Event()
    requested = False
    started: dict[str, Any] = {}
    buffer = bytearray()
    events: list[tuple[str, dict[str, Any]]] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
            return
        buffer.extend(message.get("body", b""))
        while b"\n\n" in buffer:
            block, _, rest = bytes(buffer).partition(b"\n\n")
            buffer[:] = rest
            fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if not line.startswith(":")
                          and ": " in line)
            if "event" in fields:
                events.append((fields["event"], orjson.loads(fields["data"])))
        if len(events) >= count or not message.get("more_body", False):
            gone.set()

    await asyncio.wait_for(app(scope, receive, send), timeout_s)
    headers_out = {k.decode(): v.decode() for k, v in started.get("headers", [])}
    return SseStream(started.get("status", 0), headers_out, events)
