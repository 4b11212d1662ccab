"""``POST /events``: validate a batch, publish the valid events, dead-letter the rest with reasons.

One bad event never blocks the good ones in its batch: each is judged alone and reported back by
its index. A body that cannot be a batch at all (not JSON, too large, not an array) is refused whole
with a 4xx that says what to send instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from common.events import format_ts, normalize_event
from common.settings import Settings
from ingest.publisher import EventPublisher, KafkaUnavailable


class IngestMetrics(Protocol):
    """What ingestion counts for ``GET /metrics`` (the serving process's metrics implement it)."""

    def observe_ingest(self, accepted: int, rejected_reasons: list[str]) -> None: ...

    def observe_ingest_refused(self, events: int, reason: str) -> None: ...


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _any_tenant() -> str | None:
    return None


def bind_tenant(raw: Any, bound: str | None) -> Any:
    """The event as the key's tenant sends it: stamped with ``bound``; naming another tenant is invalid.

    A tenant key writes only its own tenant's data. An event that names a different tenant is rejected
    like any other invalid event (reason in the answer and the dead-letter topic), the others go through.
    """
    if bound is None or not isinstance(raw, dict):
        return raw
    named = raw.get("tenant")
    if named not in (None, "", bound):
        raise ValueError(f"tenant {named!r} is not the tenant of this API key ({bound!r}); omit `tenant` or send "
                         f"the event with a key of {named!r}")
    return {**raw, "tenant": bound}


def ingest_router(
    settings: Settings, publisher: EventPublisher, bound_tenant: Callable[..., Any] = _any_tenant,
    metrics: IngestMetrics | None = None,
) -> APIRouter:
    """``bound_tenant`` is a FastAPI dependency: the tenant the caller's API key writes to (None: any);
    ``metrics`` counts accepted and rejected events for GET /metrics."""
    router = APIRouter(tags=["ingestion"])
    max_age = timedelta(days=settings.ingest_max_age_days)
    max_future = timedelta(seconds=settings.ingest_max_future_seconds)

    @router.post(
        "/events",
        summary="Ingest a batch of events",
        description=(
            f"Body: a JSON array of at most {settings.ingest_max_events} events and "
            f"{settings.ingest_max_bytes} bytes. Each event needs `event`, `timestamp` (ISO-8601) and "
            "`user_id`; optional `tenant` (with a tenant's API key: that tenant, or omitted), `event_id`, `page`, "
            "`country`, `device`, `revenue`, `properties`. "
            "Invalid events are rejected by index with a reason and kept in the dead-letter topic. "
            "`sync=true` answers only after Kafka acknowledged every event."
        ),
    )
    async def post_events(
        request: Request, sync: bool = Query(False), bound: str | None = Depends(bound_tenant)
    ) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.ingest_max_bytes:
            return _error(413, f"body is larger than {settings.ingest_max_bytes} bytes; split it into smaller batches")
        body = await request.body()
        if len(body) > settings.ingest_max_bytes:
            return _error(413, f"body is larger than {settings.ingest_max_bytes} bytes; split it into smaller batches")
        try:
            batch = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"body is not valid JSON ({exc}); send a JSON array of event objects")
        if not isinstance(batch, list):
            return _error(422, "body must be a JSON array of event objects, e.g. [{\"event\": \"page_view\", ...}]")
        if len(batch) > settings.ingest_max_events:
            return _error(413, f"{len(batch)} events in one batch; the limit is {settings.ingest_max_events}")

        now = datetime.now(UTC)
        accepted: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(batch):
            try:
                event = bind_tenant(raw, bound)
                accepted.append(normalize_event(event, now=now, max_age=max_age, max_future=max_future))
            except ValueError as exc:
                errors.append({"index": index, "reason": str(exc)})
                dead.append({"index": index, "reason": str(exc), "event": raw, "received_at": format_ts(now)})
        try:
            await run_in_threadpool(publisher.publish, accepted, dead, wait=sync)
        except KafkaUnavailable as exc:
            if metrics is not None:
                metrics.observe_ingest_refused(len(batch), "kafka_unavailable")
            return _error(503, str(exc))
        if metrics is not None:
            metrics.observe_ingest(len(accepted), [e["reason"] for e in errors])
        return {"accepted": len(accepted), "rejected": len(errors), "errors": errors}

    return router
