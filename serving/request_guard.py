"""Every request body is bounded, and a caller without a valid key never gets its body read.

FastAPI reads a request's whole body (to parse a JSON model) before it runs any dependency, the API-key
check included, and a chunked body announces no length. So without this guard anyone could make the
process buffer any amount of memory without a key. This ASGI middleware sits in front of every route:

* a declared ``Content-Length`` over the limit is answered 413 at once, nothing read;
* a body that arrives chunked is counted while it streams, and refused with 413 the moment it passes
  the limit (the route sees an error, never the rest);
* with API keys on, a request that carries a body but no known key is answered 401 before a byte of the
  body is read (the key check is a lookup in the cached key table; the route's own dependency still
  does the full check, rate limit included).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KeyCheck = Callable[[str | None, str | None], Awaitable[str | None]]  # (bearer, X-API-Key) → why refused, or None


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; answered 413 by the app's handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes (LAKEHOUSE_REQUEST_MAX_BYTES); "
                              "send a smaller body")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return _header(scope, b"transfer-encoding") is not None


def presented_keys(scope: Scope) -> tuple[str | None, str | None]:
    """(bearer token, X-API-Key) as the request sent them."""
    authorization = _header(scope, b"authorization") or ""
    scheme, _, token = authorization.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return bearer, _header(scope, b"x-api-key")


async def _answer(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]  # the unread rest of the body must not be parsed as the next request
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, max_bytes: int, key_check: KeyCheck | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.key_check = key_check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await _answer(send, 413, f"request body is larger than {self.max_bytes} bytes "
                                     "(LAKEHOUSE_REQUEST_MAX_BYTES); send a smaller body")
            return
        refusal = await self.key_check(*presented_keys(scope)) if self.key_check is not None else None
        if refusal is not None:  # answered like the route's own key check, before a byte of the body is read
            await _answer(send, 401, refusal, {"WWW-Authenticate": "Bearer"})
            return
        seen = 0
        exceeded = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def closing(message: Message) -> None:
            if exceeded and message["type"] == "http.response.start":  # the unread rest is not a next request
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, counted, closing)
