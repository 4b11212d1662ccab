"""Redis clients that survive a Redis restart without mistaking it for an outage.

A connection pooled before Redis restarted fails on its next use ("Connection lost"), and redis-py does
not retry that by default. Every caller here falls back on a Redis error (the cache answers uncached, the
rate limiter keeps buckets in-process, the alert evaluator runs without its lease), so one stale
connection per pooled slot would count as an outage: a burst of requests spread over stale connections
went half to Redis's buckets and half to the in-process ones, and a rate limit let through more than its
burst. One retry on a fresh connection tells a restart that already happened from Redis being down;
no backoff, so a real outage still costs a single connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

_RETRIED = [RedisConnectionError, RedisTimeoutError]


def async_redis(url: str, timeout_s: float, connect_timeout_s: float | None = None) -> aioredis.Redis:
    """An asyncio client for ``url``: ``timeout_s`` per command, one retry on a fresh connection."""
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                   socket_connect_timeout=connect_timeout_s or timeout_s,
                                   retry=AsyncRetry(NoBackoff(), 1), retry_on_error=_RETRIED)


def sync_redis(url: str, timeout_s: float) -> redis.Redis:
    """A blocking client for ``url``, with the same retry as ``async_redis``."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 1), retry_on_error=_RETRIED)


class RawGets:
    """``GET`` alone over plain RESP connections of its own: the cached-read fast path's one command.

    redis-py's asyncio client spends about 70–90 µs of CPU per command (connection pool, retry wrapper,
    event dispatch, the pure-Python reply parser): as much as everything else a cached answer costs. A
    ``GET`` is one line out and a bulk string back, so this writes the request and reads the reply on a
    pooled stream itself (about 20 µs). Same failure model as ``async_redis``: ``timeout_s`` per command,
    and a pooled connection that fails (Redis restarted) is retried once on a fresh one; any failure is
    a ``redis.exceptions.ConnectionError`` (a ``RedisError``) and never leaves a connection out of step.
    ``supported`` is False for what it does not speak (TLS ``rediss://``, Unix sockets, URL options): the
    caller then uses the redis-py client.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.supported = parts.scheme == "redis" and bool(parts.hostname) and not parts.query
        self._host, self._port = parts.hostname or "", parts.port or 6379
        path = parts.path.strip("/")
        self._db = int(path) if path.isdigit() else 0
        self.supported = self.supported and (path.isdigit() or not path)
        self._auth = [unquote(p) for p in (parts.username, parts.password) if p] if parts.password else []
        self._timeout = timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self, key: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # streams belong to the loop that opened them (a test's second client)
            self.close()
            self._loop = loop
        encoded = key.encode()
        request = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(encoded), encoded)
        for attempt in (0, 1):
            pooled = bool(self._idle)
            conn = self._idle.pop() if pooled else None
            try:
                async with asyncio.timeout(self._timeout):
                    if conn is None:
                        conn = await self._connect()
                    value = await self._ask(conn, request)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, RedisConnectionError) as exc:
                if conn is not None:
                    conn[1].close()
                if pooled and attempt == 0:
                    continue  # a connection from before a Redis restart: once more on a fresh one
                raise RedisConnectionError(f"GET from Redis at {self._host}:{self._port} failed: {exc!r}") from exc
            except BaseException:  # cancelled mid-reply: the connection's next reply would be this one's
                if conn is not None:
                    conn[1].close()
                raise
            self._idle.append(conn)
            return value
        raise AssertionError("unreachable")

    @staticmethod
    async def _ask(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> bytes | None:
        reader, writer = conn
        writer.write(request)
        line = await reader.readline()
        if line[:1] == b"$":
            size = int(line[1:-2])
            return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
        raise RedisConnectionError(f"unexpected reply to GET: {line[:200]!r}")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        conn = (reader, writer)
        commands = ([["AUTH", *self._auth]] if self._auth else []) + ([["SELECT", str(self._db)]] if self._db else [])
        for command in commands:
            parts = [c.encode() for c in command]
            writer.write(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            line = await reader.readline()
            if not line.startswith(b"+OK"):
                writer.close()
                raise RedisConnectionError(f"Redis refused {command[0]}: {line[:200]!r}")
        return conn

    def close(self) -> None:
        while self._idle:
            with contextlib.suppress(RuntimeError):  # its event loop already closed: nothing left to flush
                self._idle.pop()[1].close()
