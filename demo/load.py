"""Drives the API the way clients do: batched posts at a target rate, and freshness probes.

Shared by the demo, the tests and the benchmarks so that all three measure the same thing.
Freshness is measured end to end: a probe event is posted, then the query API is polled until the
probe's own minute shows it; the elapsed time is what a dashboard user would wait.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import httpx

PROBE_TENANT = "freshness-probe"


@dataclass
class PostResult:
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def post_events(client: httpx.Client, events: Sequence[Any], batch_size: int = 500, sync: bool = False) -> PostResult:
    result = PostResult()
    for start in range(0, len(events), batch_size):
        chunk = list(events[start:start + batch_size])
        response = client.post("/events", json=chunk, params={"sync": "true"} if sync else None)
        response.raise_for_status()
        body = response.json()
        result.accepted += body["accepted"]
        result.rejected += body["rejected"]
        result.requests += 1
        result.errors.extend({**e, "index": e["index"] + start} for e in body["errors"])
    return result


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


class PeriodicProbe:
    """Starts ``_one`` on a thread of its own every ``interval_s`` (after ``offset_s``) while in its ``with`` block: a
    slow probe never delays the next one. Leaving the block waits up to ``timeout_s`` for each probe still running."""

    def __init__(self, interval_s: float, timeout_s: float, offset_s: float = 0.0) -> None:
        self._interval, self._timeout, self._offset = interval_s, timeout_s, offset_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _one(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        self._stop.wait(self._offset)
        while not self._stop.is_set():
            worker = threading.Thread(target=self._one, daemon=True)
            worker.start()
            self._threads.append(worker)
            self._stop.wait(self._interval)

    def __enter__(self) -> Self:
        self._main = threading.Thread(target=self._loop, daemon=True)
        self._main.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._main.join()
        for worker in self._threads:
            worker.join(self._timeout)


class FreshnessProbe(PeriodicProbe):
    """Sends one probe event every ``interval_s`` on a thread and records send → visible latency."""

    def __init__(self, api_url: str, interval_s: float = 1.0, timeout_s: float = 60.0,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(interval_s, timeout_s)
        # headers: the API key, e.g. serving.tenancy.auth.bearer_headers(settings.admin_key) (the probe tenant is named)
        self._client = httpx.Client(base_url=api_url, timeout=10, headers=headers)
        self.latencies: list[float] = []
        self.sent_at: list[float] = []  # the wall clock (epoch seconds) each latency's probe was sent at
        self.timeouts = 0

    def _one(self) -> None:
        page = f"/probe/{uuid.uuid4().hex[:12]}"
        sent_at = time.time()
        now = datetime.now(UTC)
        event = {"tenant": PROBE_TENANT, "event": "probe", "timestamp": now.isoformat(), "user_id": "probe",
                 "page": page}
        sent = time.perf_counter()
        self._client.post("/events", json=[event]).raise_for_status()
        params = {"metric": "events", "tenant": PROBE_TENANT, "range": "15m", "filter": f"page:{page}"}
        while time.perf_counter() - sent < self._timeout:
            series = self._client.get("/v1/timeseries", params=params).json().get("series", [])
            if series and sum(p[1] for p in series[0]["points"]) >= 1:
                self.latencies.append(time.perf_counter() - sent)
                self.sent_at.append(sent_at)
                return
            time.sleep(0.05)
        self.timeouts += 1

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._client.close()

    def summary(self) -> dict[str, float]:
        lat = self.latencies
        return {
            "probes": len(lat),
            "timeouts": self.timeouts,
            "p50_s": round(statistics.median(lat), 3) if lat else float("nan"),
            "p95_s": round(percentile(lat, 95), 3),
            "p99_s": round(percentile(lat, 99), 3),
        }
