"""``RawGets`` answers a GET as redis-py does, over a real ``redis-server`` (Debian's binary, started here).

The truth is redis-py's own ``GET`` on the same keys: values of every size (past the stream reader's line
limit), bytes that look like the protocol, a missing key, another database, a password, and a Redis
restart under a pooled connection.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import RedisError

from common.redis_clients import RawGets

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", *extra], stdout=subprocess.DEVNULL)
    password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
    client = redis.Redis(port=port, password=password)
    for _ in range(200):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


@pytest.fixture()
def server() -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    proc = start(port)
    try:
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(10)


VALUES = [b"", b"x", b"$3\r\nGET\r\n", b"\r\n" * 10, bytes(range(256)) * 40, b"y" * 300_000]


def test_values_of_every_shape_and_a_missing_key_as_redis_py_reads_them(server) -> None:
    port, _ = server
    truth = redis.Redis(port=port, db=3)
    for i, value in enumerate(VALUES):
        truth.set(f"k{i}", value)

    async def read() -> list[bytes | None]:
        gets = RawGets(f"redis://127.0.0.1:{port}/3", timeout_s=2)
        try:
            return [await gets.get(f"k{i}") for i in range(len(VALUES))] + [await gets.get("missing")]
        finally:
            gets.close()

    assert asyncio.run(read()) == [truth.get(f"k{i}") for i in range(len(VALUES))] + [None]


def test_concurrent_gets_each_get_their_own_answer(server) -> None:
    port, _ = server
    truth = redis.Redis(port=port)
    for i in range(50):
        truth.set(f"c{i}", f"value-{i}".encode() * (i + 1))

    async def read() -> list[bytes | None]:
        gets = RawGets(f"redis://127.0.0.1:{port}/0", timeout_s=2)
        try:
            return await asyncio.gather(*(gets.get(f"c{i % 50}") for i in range(200)))
        finally:
            gets.close()

    assert asyncio.run(read()) == [truth.get(f"c{i % 50}") for i in range(200)]


def test_a_redis_restart_under_a_pooled_connection_is_retried_once_and_down_is_an_error() -> None:
    port = free_port()
    proc = start(port)

    async def scenario() -> tuple[bytes | None, bytes | None, str]:
        gets = RawGets(f"redis://127.0.0.1:{port}/0", timeout_s=1)
        try:
            redis.Redis(port=port).set("k", b"before")
            first = await gets.get("k")  # leaves a pooled connection
            nonlocal proc
            proc.terminate()
            proc.wait(10)
            proc = start(port)
            redis.Redis(port=port).set("k", b"after")
            second = await gets.get("k")  # the pooled connection is dead: retried on a fresh one
            proc.terminate()
            proc.wait(10)
            try:
                await gets.get("k")
                down = "answered"
            except RedisError as exc:
                down = type(exc).__name__
            return first, second, down
        finally:
            gets.close()

    try:
        assert asyncio.run(scenario()) == (b"before", b"after", "ConnectionError")
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_password_and_what_it_does_not_speak() -> None:
    port = free_port()
    proc = start(port, "--requirepass", "s3cret")
    try:
        redis.Redis(port=port, password="s3cret").set("k", b"v")

        async def read(url: str) -> bytes | None:
            gets = RawGets(url, timeout_s=1)
            try:
                return await gets.get("k")
            finally:
                gets.close()

        assert asyncio.run(read(f"redis://:s3cret@127.0.0.1:{port}/0")) == b"v"
        with pytest.raises(RedisError):
            asyncio.run(read(f"redis://:wrong@127.0.0.1:{port}/0"))
    finally:
        proc.terminate()
        proc.wait(10)
    assert not RawGets("rediss://127.0.0.1:6380/0", 1).supported
    assert not RawGets("unix:///run/redis.sock", 1).supported
    assert not RawGets("redis://127.0.0.1:6379/0?socket_timeout=3", 1).supported
    assert RawGets("redis://127.0.0.1:6379", 1).supported


def test_one_client_used_from_two_event_loops_in_turn(server) -> None:
    port, _ = server
    redis.Redis(port=port).set("k", b"v")
    gets = RawGets(f"redis://127.0.0.1:{port}/0", timeout_s=1)
    try:
        assert [asyncio.run(gets.get("k")) for _ in range(2)] == [b"v", b"v"]  # (a TestClient per test does this)
    finally:
        gets.close()
