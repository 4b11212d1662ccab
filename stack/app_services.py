"""The whole local stack: the infrastructure services plus this project's two long-running processes.

The API (which is also the hot node) starts after Kafka, MinIO and Redis; the stream job starts after
the API because in embedded mode it reaches chDB through the hot node.
"""

from __future__ import annotations

import sys
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


def full_stack(settings: Settings) -> Stack:
    stack = local_stack(settings)
    python = [sys.executable, "-m", "cli.main"]
    repo = Path(__file__).resolve().parents[1]
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
