"""Test doubles that are real: a local webhook receiver (an HTTP server thread) and steady synthetic traffic."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from common.settings import Settings
from serving.tenancy.auth import bearer_headers


@dataclass
class Received:
    body: dict
    status: int  # what the receiver answered


class WebhookReceiver:
    """Records every POST; answers ``fail_status`` to the first ``failures`` of them, 200 afterwards."""

    def __init__(self, failures: int = 0, fail_status: int = 500) -> None:
        self.received: list[Received] = []
        self.failures = failures
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    status = fail_status if len(receiver.received) < receiver.failures else 200
                    receiver.received.append(Received(body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def delivered(self) -> list[dict]:
        """The notifications answered 200, in arrival order."""
        with self._lock:
            return [r.body for r in self.received if r.status == 200]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class SteadyTraffic:
    """One ``page_view`` per second of event time, from ``since`` on, posted as time passes.

    While it is on, every elapsed second gets exactly one event (a backlog is posted in one go), so a
    complete minute holds exactly 60 events whatever the thread's timing; while it is off, the seconds
    pass without events — a traffic drop. ``sent`` is the ground truth: event-time seconds posted."""

    def __init__(self, settings: Settings, tenant: str, since: datetime) -> None:
        self._client = httpx.Client(base_url=settings.api_url, timeout=30, headers=bearer_headers(settings.admin_key))
        self.tenant = tenant
        self.sent: list[datetime] = []
        self._next = since.replace(microsecond=0)
        self._on = threading.Event()
        self._on.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def start(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)  # whole seconds already over
            seconds = []
            while self._next <= now:
                seconds.append(self._next)
                self._next += timedelta(seconds=1)
            if seconds and self._on.is_set():
                self._post(seconds)
            self._stop.wait(0.5)

    def _post(self, seconds: list[datetime]) -> None:
        for i in range(0, len(seconds), 500):
            chunk = seconds[i:i + 500]
            batch = [{"tenant": self.tenant, "event": "page_view", "timestamp": s.isoformat(), "user_id": f"u{j % 7}",
                      "page": "/synthetic", "country": "US", "device": "desktop"} for j, s in enumerate(chunk)]
            try:
                response = self._client.post("/events", json=batch, params={"sync": "true"})
                if response.status_code != 200 or response.json()["accepted"] != len(chunk):
                    self.errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
            except httpx.HTTPError as exc:
                self.errors.append(str(exc))
                continue
            self.sent.extend(chunk)

    def pause(self) -> None:
        self._on.clear()

    def resume(self) -> None:
        self._on.set()

    def count(self, start: datetime, end: datetime) -> int:
        return sum(start <= s < end for s in list(self.sent))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._client.close()


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))
