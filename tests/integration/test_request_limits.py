"""An unauthenticated 50 MB chunked POST is refused early and the API process does not grow; with a key,
the same body is refused with 413 once it passes the limit. The real API (uvicorn), raw sockets."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

from common.settings import Settings
from stack import process
from stack.services import Stack

TOTAL = 50 * 1024 * 1024
CHUNK = 256 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def chunked_post(settings: Settings, path: str, headers: dict[str, str]) -> tuple[int, int, float]:
    """Streams up to 50 MB chunked; stops as soon as the server answers. (status, bytes sent, seconds)."""
    started = time.perf_counter()
    sock = socket.create_connection((settings.api_host, settings.api_port), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: {settings.api_host}", "Content-Type: application/json",
            "Transfer-Encoding: chunked", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    sock.sendall("\r\n".join(head).encode())
    piece = f"{CHUNK:x}\r\n".encode() + b"[" + b" " * (CHUNK - 1) + b"\r\n"
    sent, answer = 0, b""
    try:
        while sent < TOTAL:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(piece)
            sent += CHUNK
        sock.settimeout(30)
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    except (BrokenPipeError, ConnectionResetError):
        answer = answer or sock.recv(4096)
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
    return status, sent, time.perf_counter() - started


def test_an_unauthenticated_chunked_flood_is_refused_early_and_costs_no_memory(stack: Stack,
                                                                            settings: Settings) -> None:
    record = process.read_pid(settings.home / "run" / "api.pid")
    assert record is not None and record.alive()
    before = rss_kib(record.pid)
    results = {}
    for path in ("/events", "/v1/query", "/v1/alerts", "/v1/dashboards"):
        results[path] = chunked_post(settings, path, {})
        assert results[path][0] == 401, (path, results[path])
        assert results[path][1] < 16 * 1024 * 1024, (path, results[path])  # refused long before 50 MB
    results["/v1/query bad key"] = chunked_post(settings, "/v1/query", {"Authorization": "Bearer nope"})
    assert results["/v1/query bad key"][0] == 401
    with_key = chunked_post(settings, "/v1/query", {"Authorization": f"Bearer {settings.admin_key}"})
    assert with_key[0] == 413 and with_key[1] < 16 * 1024 * 1024, with_key
    grown = rss_kib(record.pid) - before
    shown = ", ".join(f"{p} {s} after {b / 2**20:.1f} MiB in {t:.2f} s" for p, (s, b, t) in results.items())
    print(f"request limits: {shown}; admin 413 after {with_key[1] / 2**20:.1f} MiB; API RSS grew {grown} KiB")
    assert grown < 20 * 1024, f"the API process grew by {grown} KiB"
