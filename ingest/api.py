"""``POST /events``: validate a batch, publish the valid events, dead-letter the rest with reasons.

One bad event never blocks the good ones in its batch: each is judged alone and reported back by
its index. A body that cannot be a batch at all (not JSON, too large, not an array) is refused whole
with a 4xx that says what to send instead.

Acknowledged means durable by default: the answer comes once Kafka acknowledged every event
(``acks=all``); ``?sync=false`` (or ``LAKEHOUSE_INGEST_WAIT_FOR_KAFKA=false``) answers once the events
are queued, and a delivery that fails afterwards is counted and logged. Retrying is safe: events
carry their ``event_id`` or, with an ``Idempotency-Key`` header, an id derived from the key and their
position, so the stream counts a retried batch once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from common.events import MAX_IDEMPOTENCY_KEY, format_ts, idempotent_event_id, normalize_event
from common.settings import Settings
from ingest.fast_contract import PlainEvents
from ingest.publisher import KafkaUnavailable, Publisher


class IngestMetrics(Protocol):
    """What ingestion counts for ``GET /metrics`` (the serving process's metrics implement it)."""

    def observe_ingest(self, accepted: int, rejected_reasons: list[str]) -> None: ...

    def observe_ingest_refused(self, events: int, reason: str) -> None: ...

    def observe_delivery_failure(self, events: int) -> None: ...


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _any_tenant() -> str | None:
    return None


def _not_plain(_raw: Any) -> None:
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
    settings: Settings, publisher: Publisher, bound_tenant: Callable[..., Any] = _any_tenant,
    metrics: IngestMetrics | None = None,
) -> APIRouter:
    """``bound_tenant`` is a FastAPI dependency: the tenant the caller's API key writes to (None: any);
    ``metrics`` counts accepted and rejected events (and failed async deliveries) for GET /metrics."""
    router = APIRouter(tags=["ingestion"])
    if metrics is not None:
        publisher.on_delivery_failure = metrics.observe_delivery_failure
    max_age = timedelta(days=settings.ingest_max_age_days)
    max_future = timedelta(seconds=settings.ingest_max_future_seconds)
    fast = settings.ingest_fast_contract

    @router.post(
        "/events",
        summary="Ingest a batch of events",
        description=(
            f"Body: a JSON array of at most {settings.ingest_max_events} events and "
            f"{settings.ingest_max_bytes} bytes. Each event needs `event`, `timestamp` (ISO-8601) and "
            "`user_id`; optional `tenant` (with a tenant's API key: that tenant, or omitted), `event_id`, `page`, "
            "`country`, `device`, `revenue`, `properties`. "
            "Invalid events are rejected by index with a reason and kept in the dead-letter topic. "
            f"By default ({'sync' if settings.ingest_wait_for_kafka else 'async'}) "
            "the answer comes once Kafka acknowledged every event, so an acknowledged event is durable; "
            "`sync=false` answers once queued (faster; a failed delivery is only counted and logged). "
            "Send an `Idempotency-Key` header (or your own `event_id`s) to make a retry count once."
        ),
    )
    async def post_events(
        request: Request,
        sync: bool | None = Query(None, description="Wait for Kafka's acknowledgement (default: "
                                  f"{str(settings.ingest_wait_for_kafka).lower()})."),
        idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
        bound: str | None = Depends(bound_tenant),
    ) -> Any:
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            return _error(400, f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters; send a new random "
                               "key per batch and the same key when you retry it")
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
        # plain events the short way, every other one (and its reason) through the contract itself
        plain = PlainEvents(now=now, max_age=max_age, max_future=max_future).plain_event if fast else _not_plain
        for index, raw in enumerate(batch):
            try:
                event = bind_tenant(raw, bound)
                if idempotency_key is not None and isinstance(event, dict) and not event.get("event_id"):
                    event = {**event, "event_id": idempotent_event_id(idempotency_key, index)}
                normalized = plain(event)
                accepted.append(normalized if normalized is not None else
                                normalize_event(event, now=now, max_age=max_age, max_future=max_future))
            except ValueError as exc:
                errors.append({"index": index, "reason": str(exc)})
                dead.append({"source": "api", "index": index, "reason": str(exc), "event": raw,
                             "received_at": format_ts(now)})
        try:
            wait = settings.ingest_wait_for_kafka if sync is None else sync
            await run_in_threadpool(publisher.publish, accepted, dead, wait=wait)
        except KafkaUnavailable:  # answered 503 (serving.errors): nothing of the batch was accepted
            if metrics is not None:
                metrics.observe_ingest_refused(len(batch), "kafka_unavailable")
            raise
        if metrics is not None:
            metrics.observe_ingest(len(accepted), [e["reason"] for e in errors])
        return {"accepted": len(accepted), "rejected": len(errors), "errors": errors}

    return router
