"""Services that a test starts for itself beside the session stack: free ports, MinIO alone."""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from common.settings import Settings
from stack import ensure_bucket, local_stack
from stack.app_services import full_stack
from stack.services import Stack


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_pair(low: int = 30000, high: int = 32700) -> int:
    """A free port whose successor is free too (Kafka's controller and MinIO's console use port + 1), below the
    ephemeral range, so no outgoing connection takes it between this check and the service's start."""
    for _ in range(200):
        port = random.randrange(low, high, 2)
        if _free(port) and _free(port + 1):
            return port
    raise RuntimeError(f"no two consecutive free ports found in {low}-{high}")


@contextmanager
def minio_alone(settings: Settings) -> Iterator[Settings]:
    """MinIO only, with the lake's bucket created; stopped again whatever the test does."""
    stack = local_stack(settings, progress=print)
    try:
        stack.up(["minio"])
        ensure_bucket(settings, progress=print)
        yield settings
    finally:
        stack.down(["minio"])


@contextmanager
def environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """``overrides`` in this process's environment, which the stack's child processes are spawned with and
    ``Settings()`` reads; the previous values come back afterwards, whatever the test does."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def own_stack(env: Mapping[str, str], services: list[str] | None = None) -> Iterator[tuple[Settings, Stack]]:
    """A whole stack of the test's own (its home and ports in ``env``), stopped and checked for leftovers after.

    Its stream reads micro-batches of the production size unless ``env`` says otherwise: the session's small
    ones (``TEST_ENV``, for tests that kill the stream in the middle of a run) fall behind a sustained load.
    """
    production = {"LAKEHOUSE_STREAM_MAX_OFFSETS_PER_TRIGGER":
                  str(Settings.model_fields["stream_max_offsets_per_trigger"].default)}
    with environment({**production, **env}):
        settings = Settings()
        stack = full_stack(settings)
        try:
            stack.up(services)
            yield settings, stack
        finally:
            stack.down(services)
            print(stack.confirm_stopped())


def stream_of_its_own(prefix: str, home: Path) -> dict[str, str]:
    """Settings that put the session stack's stream on a topic, checkpoints and lake of its own (under ``home``),
    so a test can stop, restart or starve it without touching the session's data; the topic is
    ``LAKEHOUSE_KAFKA_TOPIC``."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return {
        "LAKEHOUSE_KAFKA_TOPIC": topic,
        "LAKEHOUSE_KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "LAKEHOUSE_CHECKPOINT_DIR": str(home / "checkpoints"),
        "LAKEHOUSE_LAKE_URI": str(home / "lake"),
    }
