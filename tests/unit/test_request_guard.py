"""Request bodies are bounded before parsing, chunked ones too, and no body is read without a known key."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from serving.request_guard import RequestGuard, presented_keys


class Body(BaseModel):
    text: str


def app_with_guard(max_bytes: int, reads: list[int], keys: set[str] | None = None) -> TestClient:
    app = FastAPI()

    @app.post("/echo")
    def echo(body: Body) -> dict:
        reads.append(len(body.text))
        return {"length": len(body.text)}

    async def key_check(bearer: str | None, header: str | None) -> str | None:
        return None if keys is None or {bearer, header} & keys else "unknown key"

    app.add_middleware(RequestGuard, max_bytes=max_bytes, key_check=key_check)
    return TestClient(app)


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    yield b'{"text": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


def test_a_declared_length_over_the_limit_is_refused_unread():
    reads: list[int] = []
    client = app_with_guard(100, reads)
    refused = client.post("/echo", json={"text": "x" * 200})
    assert refused.status_code == 413 and "LAKEHOUSE_REQUEST_MAX_BYTES" in refused.text
    assert client.post("/echo", json={"text": "x" * 50}).json() == {"length": 50}
    assert reads == [50]


def test_a_chunked_body_is_counted_and_refused_once_past_the_limit():
    reads: list[int] = []
    client = app_with_guard(10_000, reads)
    refused = client.post("/echo", content=chunks(50_000), headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and refused.headers["connection"] == "close"
    small = client.post("/echo", content=chunks(5_000), headers={"Content-Type": "application/json"})
    assert small.json() == {"length": 5_000}
    assert reads == [5_000]


def test_a_body_without_a_known_key_is_refused_before_it_is_read():
    pulled: list[int] = []

    def counting(total: int) -> Iterator[bytes]:
        for part in chunks(total):
            pulled.append(len(part))
            yield part

    reads: list[int] = []
    client = app_with_guard(10_000_000, reads, keys={"good"})
    for headers in ({}, {"Authorization": "Bearer bad"}, {"X-API-Key": "bad"}):
        refused = client.post("/echo", content=counting(1_000_000),
                              headers={"Content-Type": "application/json", **headers})
        assert refused.status_code == 401, refused.text
    assert reads == []
    ok = client.post("/echo", json={"text": "hi"}, headers={"Authorization": "Bearer good"})
    assert ok.json() == {"length": 2}
    assert client.post("/echo", json={"text": "hi"}, headers={"X-API-Key": "good"}).status_code == 200


def test_keys_are_read_as_the_auth_dependency_reads_them():
    scope = {"headers": [(b"authorization", b"Bearer abc"), (b"x-api-key", b"def")]}
    assert presented_keys(scope) == ("abc", "def")
    assert presented_keys({"headers": [(b"authorization", b"Basic abc")]}) == (None, None)

