"""Endpoint parsing and cheap readiness probes.

Readiness probes are called in a polling loop and by `stack status`, so each one must answer in
about a second whether or not anything listens.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """Split ``host:port``, ``scheme://host:port/...`` or ``[v6]:port`` into host and port."""
    if "://" not in address:
        address = "//" + address
    parts = urlsplit(address)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """All ``host:port`` pairs of a Kafka bootstrap string (comma separated)."""
    return [host_port(item.strip(), 9092) for item in bootstrap.split(",") if item.strip()]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    """Readiness check: the port accepts connections."""
    return lambda: port_open(host, port)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def http_ready(url: str) -> Callable[[], bool]:
    """Readiness check: ``url`` answers 2xx (e.g. a health endpoint)."""
    return lambda: http_ok(url)
