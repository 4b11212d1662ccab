"""Free loopback ports for tests that start their own services beside the session stack."""

from __future__ import annotations

import random
import socket


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_pair(low: int = 41000, high: int = 49000) -> int:
    """A free port whose successor is free too (Kafka's controller and MinIO's console use port + 1)."""
    for _ in range(200):
        port = random.randrange(low, high, 2)
        if _free(port) and _free(port + 1):
            return port
    raise RuntimeError(f"no two consecutive free ports found in {low}-{high}")
