"""The whole local stack: the infrastructure services plus this project's long-running processes.

The API (which is also the hot node) starts after Kafka, MinIO and Redis; the stream job starts after
the API because in embedded mode it reaches chDB through the hot node. With ``api_workers`` N >= 1 and
embedded chDB the hot node is a service of its own (``hot-node``), started before the API's N workers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from common.settings import Settings
from stack import local_stack
from stack.net import host_port, http_ready
from stack.services import Stack, process_service

# The stream job stops its queries and Spark within 15 s of SIGTERM (stream/shutdown.py); the group is
# SIGKILLed only after that bound and a margin. The harness starts it by command line, so the figure is
# repeated here rather than imported (the harness builds on common only).
STREAM_STOP_SECONDS = 25.0


def stream_ready_file(settings: Settings) -> Path:
    return settings.home / "run" / "stream.ready"


def _stream_ready(settings: Settings) -> bool:
    from stack.process import read_pid

    marker = stream_ready_file(settings)
    record = read_pid(settings.home / "run" / "stream.pid")
    return record is not None and record.alive() and marker.exists() and marker.read_text().strip() == str(record.pid)


def separate_hot_node(settings: Settings) -> bool:
    """Does the stack run the hot node as its own service (API workers in front of embedded chDB)?"""
    return settings.api_workers > 0 and settings.embedded_clickhouse


def app_services(settings: Settings) -> list[str]:
    """The names of the services that make the API answer: the hot node first when it is a service of its own."""
    return ["hot-node", "api"] if separate_hot_node(settings) else ["api"]


def _hot_node_ready(settings: Settings) -> Callable[[], bool]:
    from common.hot_store import FlightHotStore

    def ready() -> bool:
        client = FlightHotStore.for_settings(settings, timeout_s=2.0)
        try:
            return client.ping()
        finally:
            client.close()
    return ready


def full_stack(settings: Settings) -> Stack:
    stack = local_stack(settings)
    python = [sys.executable, "-m", "cli.main"]
    repo = Path(__file__).resolve().parents[1]
    if separate_hot_node(settings):
        stack.register(
            process_service(
                settings.home, "hot-node", python + ["hot-node"], _hot_node_ready(settings), settings.hot_node_url,
                cwd=repo, ports=[host_port(settings.hot_node_url, 0)], start_timeout=60.0,
                hint="see the hot-node log; `lakehouse hot-node` runs it in the foreground",
            )
        )
    stack.register(
        process_service(
            settings.home, "api", python + ["serve"], http_ready(f"{settings.api_url}/health"),
            settings.api_url, cwd=repo, ports=[host_port(f"{settings.api_host}:{settings.api_port}", 0)],
            start_timeout=60.0, hint="see the api log; `lakehouse serve` runs it in the foreground",
        )
    )
    stack.register(
        process_service(
            settings.home, "stream", python + ["stream"], lambda: _stream_ready(settings),
            f"{settings.kafka_topic}@{settings.kafka_bootstrap}", cwd=repo, start_timeout=180.0,
            stop_timeout=STREAM_STOP_SECONDS,
            hint="see the stream log; `lakehouse stream` runs it in the foreground",
        )
    )
    return stack
