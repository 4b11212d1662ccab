"""What the serving process tells operators: Prometheus metrics at ``GET /metrics`` and JSON logs.

Two kinds of figures end up in the exposition. Those the process produces itself (requests, query
latency, ingestion outcomes) are counters and histograms updated as requests go by. Those that live in
other services (the stream's consumer lag, hot-tier freshness, late events) are sampled by a background
thread every ``metrics_refresh_seconds``: a scrape never waits for Kafka or the hot tier, and a service
that is down shows as a stale or missing sample, not as a failing ``/metrics``. Cache outcomes and
``Serving.counters`` (rate-limit fail-opens and the like) are read at scrape time from the objects that
count them, so ``/metrics`` and ``/stats`` agree exactly.

Every request gets an id (the caller's ``X-Request-ID`` when it sends a sane one), returned in
``X-Request-ID`` and attached to the request's log line and to every log line written while it runs.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import pyarrow as pa
from fastapi import APIRouter
from fastapi.responses import Response
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from common.events import format_ts, reason_class
from common.malloc_arenas import glibc_heap
from common.sql_files import sql_file

if TYPE_CHECKING:
    from common.hot_store import HotStore
    from common.settings import Settings
    from serving.cache import QueryCache
    from serving.query.engine import QueryEngine


class Observed(Protocol):
    """What ``/metrics`` reads at scrape time (``serving.context.Serving`` is one)."""

    cache: QueryCache
    engine: QueryEngine
    counters: dict[str, int]

log = logging.getLogger(__name__)
access_log = logging.getLogger("lakehouse.access")

# The fields of the request being served; a mutable dict so that code running in a copied context
# (thread pools, dependencies) can still add the tenant or the cache outcome to the request's log line.
_request: ContextVar[dict[str, Any] | None] = ContextVar("lakehouse_request", default=None)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def request_fields() -> dict[str, Any]:
    """The current request's log fields (a throwaway dict outside a request): set ``tenant``, ``cache``…"""
    fields = _request.get()
    return fields if fields is not None else {}


def current_route() -> str:
    """The route template of the current request (``/v1/timeseries``), bounded for metric labels."""
    scope = request_fields().get("scope")
    route = scope.get("route") if scope else None
    return getattr(route, "path", None) or "unmatched"


# --- logs -----------------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the request id when inside a request, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": format_ts(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        else:
            current = _request.get()
            if current is not None:
                out["request_id"] = current["request_id"]
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """For humans (``LAKEHOUSE_LOG_FORMAT=text``): the classic line, request fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("method", "path", "status"))
        return text


def configure_logging(log_format: str = "json", level: int = logging.INFO) -> None:
    """Route every logger of the process (ours, uvicorn's, libraries') to stderr as JSON or plain text."""
    if log_format not in ("json", "text"):
        raise ValueError(f"LAKEHOUSE_LOG_FORMAT must be `json` or `text`, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection at INFO


# --- metrics the process produces ------------------------------------------------------------------

# reason_class (a bounded label per rejection reason) lives with the contract that writes the reasons.


class ServingMetrics:
    """The process's own counters and histograms, in a registry of its own (one per app, test-safe)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.sampler: ExternalSampler | None = None  # set by serve(): gauges read from Kafka and the hot tier
        self.http_requests = Counter(
            "lakehouse_http_requests", "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"], registry=self.registry)
        self.http_duration = Histogram(
            "lakehouse_http_request_duration_seconds", "Time to answer an HTTP request, by method and route.",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.query_duration = Histogram(
            "lakehouse_query_duration_seconds",
            "Dashboard query latency by endpoint and by where the answer came from: `cache` (hit, stale, "
            "coalesced) or the tiers that computed it (`hot`, `warm`, `cold`, `hot+warm` …).",
            ["endpoint", "tier"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events_accepted = Counter(
            "lakehouse_ingest_events_accepted", "Events accepted by POST /events and handed to Kafka.",
            registry=self.registry)
        self.events_rejected = Counter(
            "lakehouse_ingest_events_rejected",
            "Events not accepted by POST /events, by reason class (invalid ones go to the dead-letter topic; "
            "`kafka_unavailable`: the whole batch was refused with 503).",
            ["reason"], registry=self.registry)
        self.delivery_failures = Counter(
            "lakehouse_ingest_delivery_failures",
            "Events answered 200 in async mode (sync=false) whose delivery to Kafka failed afterwards: lost unless "
            "the client resends them (the default sync mode answers only after Kafka acknowledged).",
            registry=self.registry)

    def observe_ingest(self, accepted: int, rejected_reasons: list[str]) -> None:
        if accepted:
            self.events_accepted.inc(accepted)
        for reason in rejected_reasons:
            self.events_rejected.labels(reason_class(reason)).inc()

    def observe_delivery_failure(self, events: int) -> None:
        self.delivery_failures.inc(events)

    def observe_ingest_refused(self, events: int, reason: str) -> None:
        if events:
            self.events_rejected.labels(reason).inc(events)

    def observe_query(self, endpoint: str, tier: str, seconds: float) -> None:
        self.query_duration.labels(endpoint, tier).observe(seconds)


# --- metrics sampled from other services -----------------------------------------------------------

STREAM_SQL = (
    "SELECT query_name, max(finished_at) AS last_batch, sum(late_rows) AS late_rows, sum(input_rows) AS input_rows, "
    "argMax(end_offsets, finished_at) AS end_offsets FROM stream_progress GROUP BY query_name"
)
DEAD_LETTERS_SQL = "SELECT reason, sum(events) AS events FROM stream_dead_letters GROUP BY reason"
NEWEST_EVENT_SQL = "SELECT max(timestamp) AS newest FROM events_raw WHERE timestamp >= now() - INTERVAL 1 DAY"
ENGINE_MEMORY_SQL = sql_file("clickhouse/queries/engine_memory.sql")


class ExternalSampler:
    """Samples the stream's progress and lag and the hot tier's freshness in a background thread."""

    def __init__(self, settings: Settings, store: HotStore, latest_offsets: Callable[[], dict[int, int]] | None = None,
                 ) -> None:
        self._settings = settings
        self._store = store
        self._latest_offsets = latest_offsets or KafkaOffsets(settings.kafka_bootstrap, settings.kafka_topic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sampled_at: float | None = None
        self.newest_event: datetime | None = None
        self.stream: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.latest: dict[int, int] = {}
        self.engine_memory: dict[str, float] = {}  # part -> bytes (engine_memory.sql)
        self.errors = 0
        self._failing: set[str] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self._settings.metrics_refresh_seconds)

    def sample_once(self) -> None:
        ok = True
        try:
            self.newest_event = self._store.query_arrow(NEWEST_EVENT_SQL).to_pylist()[0]["newest"]
            self.stream = self._store.query_arrow(STREAM_SQL).to_pylist()
            self.dead_letters = self._store.query_arrow(DEAD_LETTERS_SQL).to_pylist()
            self._recovered("the hot tier")
        except Exception as exc:  # the hot tier may be down: keep the last sample, count the failure
            ok = False
            self._failed("the hot tier", exc)
        try:  # apart: a ClickHouse server whose user may not read system tables keeps the figures above
            self.engine_memory = {r["part"]: r["bytes"] for r in self._store.query_arrow(ENGINE_MEMORY_SQL).to_pylist()}
            self._recovered("the hot tier's memory figures")
        except Exception as exc:
            self._failed("the hot tier's memory figures", exc)
        try:
            self.latest = self._latest_offsets()
            self._recovered("Kafka")
        except Exception as exc:
            ok = False
            self._failed("Kafka", exc)
        if ok:
            self.sampled_at = time.time()
        else:
            self.errors += 1

    def _failed(self, what: str, exc: Exception) -> None:
        if what not in self._failing:  # once per outage, not every few seconds
            self._failing.add(what)
            log.warning("metrics: cannot sample %s (%s); the last sample stays exposed and "
                        "lakehouse_metrics_sample_age_seconds grows", what, exc)

    def _recovered(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info("metrics: sampling %s again", what)

    def lag(self) -> dict[tuple[str, int], int]:
        """(query, partition) → records on the topic the query has not processed yet."""
        topic = self._settings.kafka_topic
        out = {}
        for row in self.stream:
            try:
                processed = {int(p): int(o) for p, o in orjson.loads(row["end_offsets"] or "{}").get(topic, {}).items()}
            except (orjson.JSONDecodeError, AttributeError, ValueError):
                continue
            for partition, latest in self.latest.items():
                out[(row["query_name"], partition)] = max(0, latest - processed.get(partition, 0))
        return out


class KafkaOffsets:
    """The latest offset of each partition of a topic, through one long-lived consumer (no group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._consumer: Any = None

    def __call__(self) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self._bootstrap, client_id="lakehouse-metrics",
                                           enable_auto_commit=False, request_timeout_ms=10_000)
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        ends = self._consumer.end_offsets([TopicPartition(self._topic, p) for p in sorted(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}


class ServingCollector:
    """Reads cache stats, tier counters, ``Serving.counters`` and the sampler's figures at scrape time."""

    def __init__(self, serving: Observed, metrics: ServingMetrics) -> None:
        self._serving = serving
        self._metrics = metrics

    def describe(self) -> list:
        return []  # metrics vary with what has been sampled; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        stats = self._serving.cache.stats
        outcomes = CounterMetricFamily(
            "lakehouse_cache_requests", "Cached-query lookups by outcome: hit, stale (served while refreshed), "
            "coalesced (waited for another request's computation), miss, bypass (Redis unreachable: uncached).",
            labels=["outcome"])
        for outcome in ("hit", "stale", "coalesced", "miss", "bypass"):
            outcomes.add_metric([outcome], getattr(stats, "bypassed" if outcome == "bypass" else
                                                   {"hit": "hits", "miss": "misses"}.get(outcome, outcome)))
        yield outcomes
        ratio = stats.hit_ratio()
        yield GaugeMetricFamily("lakehouse_cache_hit_ratio", "(hit + stale + coalesced) / (those + miss), as in "
                                "/stats; NaN before the first lookup.", value=float("nan") if ratio is None else ratio)
        yield CounterMetricFamily("lakehouse_cache_refreshes", "Background (stale-while-revalidate) refreshes "
                                  "that stored a new answer.", value=stats.refreshes)
        yield CounterMetricFamily("lakehouse_cache_refresh_errors", "Background refreshes that failed.",
                                  value=stats.refresh_errors)
        yield CounterMetricFamily("lakehouse_cache_discarded", "Answers not stored because a restatement "
                                  "invalidated the tenant while they were computed.", value=stats.discarded)
        tiers = CounterMetricFamily("lakehouse_tier_queries", "Queries sent to each storage tier.", labels=["tier"])
        for tier, n in self._serving.engine.tier_queries.items():
            tiers.add_metric([tier], n)
        yield tiers
        counters = dict(self._serving.counters)
        yield CounterMetricFamily("lakehouse_rate_limit_local", "Requests metered by the API process itself "
                                  "because the rate limiter's Redis was unreachable.",
                                  value=counters.get("rate_limit_local", 0))
        named = CounterMetricFamily("lakehouse_serving_events", "Every counter of Serving.counters by name "
                                    "(rate_limited, rate_limit_local, auth_rejected …).", labels=["name"])
        for name, n in sorted(counters.items()):
            named.add_metric([name], n)
        yield named
        heap = GaugeMetricFamily("lakehouse_process_heap_bytes", "This process's heaps outside the hot engine: "
                                 "glibc's in use and free (held in its arenas), and Arrow's memory pool.",
                                 labels=["part"])
        for part, n in {**{f"glibc_{k}": v for k, v in glibc_heap().items()},
                        "arrow_pool": pa.total_allocated_bytes()}.items():
            heap.add_metric([part], n)
        yield heap
        objects = GaugeMetricFamily("lakehouse_process_objects", "Counts that grow when this process leaks what its "
                                    "heaps do not show: Python's live small-object blocks and its threads (each "
                                    "with a stack).", labels=["kind"])
        objects.add_metric(["python_blocks"], sys.getallocatedblocks())
        objects.add_metric(["threads"], threading.active_count())
        yield objects
        if self._metrics.sampler is not None:
            yield from self._sampled(self._metrics.sampler)

    def _sampled(self, sampler: ExternalSampler) -> Iterator[Any]:
        now = time.time()
        yield CounterMetricFamily("lakehouse_metrics_sample_errors", "Failed samples of Kafka or the hot tier.",
                                  value=sampler.errors)
        if sampler.sampled_at is not None:
            yield GaugeMetricFamily("lakehouse_metrics_sample_age_seconds", "Age of the last complete sample of "
                                    "Kafka and the hot tier.", value=now - sampler.sampled_at)
        newest = sampler.newest_event
        if newest is not None and newest.year > 1970:  # max() over no rows is the epoch
            newest = newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest
            yield GaugeMetricFamily("lakehouse_hot_newest_event_age_seconds", "Freshness: now minus the newest "
                                    "event time in the hot tier (last 24 h).", value=now - newest.timestamp())
        batch_age = GaugeMetricFamily("lakehouse_stream_last_batch_age_seconds", "Now minus the end of the stream's "
                                      "last micro-batch, per streaming query.", labels=["query"])
        late = CounterMetricFamily("lakehouse_stream_late_events", "Events dropped by the stream as later than the "
                                   "watermark (stream_progress, last 30 days); the batch layer counts them.",
                                   labels=["query"])
        rows = CounterMetricFamily("lakehouse_stream_input_records", "Kafka records read by the stream "
                                   "(stream_progress, last 30 days).", labels=["query"])
        for row in sampler.stream:
            last = row["last_batch"]
            last = last.replace(tzinfo=UTC) if last.tzinfo is None else last
            batch_age.add_metric([row["query_name"]], now - last.timestamp())
            late.add_metric([row["query_name"]], row["late_rows"])
            rows.add_metric([row["query_name"]], row["input_rows"])
        yield batch_age
        yield late
        yield rows
        dead = CounterMetricFamily("lakehouse_stream_dead_letter_events", "Kafka records or events the stream sent "
                                   "to the dead-letter topic because they break the event contract, by reason class "
                                   "(stream_dead_letters, last 30 days).", labels=["reason"])
        for row in sampler.dead_letters:
            dead.add_metric([row["reason"]], row["events"])
        yield dead
        lag = sampler.lag()
        per_partition = GaugeMetricFamily("lakehouse_stream_consumer_lag_records", "Kafka consumer lag of the "
                                          "stream: latest topic offset minus the offset its last micro-batch "
                                          "processed, per query and partition.", labels=["query", "partition"])
        total: dict[str, int] = {}
        for (query, partition), n in sorted(lag.items()):
            per_partition.add_metric([query, str(partition)], n)
            total[query] = total.get(query, 0) + n
        yield per_partition
        summed = GaugeMetricFamily("lakehouse_stream_consumer_lag_total_records", "Consumer lag summed over the "
                                   "topic's partitions, per streaming query.", labels=["query"])
        for query, n in sorted(total.items()):
            summed.add_metric([query], n)
        yield summed
        engine = GaugeMetricFamily("lakehouse_hot_engine_memory", "The hot engine's memory (chDB or ClickHouse "
                                   "system tables; sql/clickhouse/queries/engine_memory.sql): bytes tracked, "
                                   "each cache, the parts' primary keys, its allocator's allocated and resident "
                                   "bytes; ActiveParts and OutdatedParts are counts.", labels=["part"])
        for part, n in sorted(sampler.engine_memory.items()):
            engine.add_metric([part], n)
        yield engine


def metrics_router(serving: Observed, metrics: ServingMetrics) -> APIRouter:
    """``GET /metrics``; registers the scrape-time collector of ``serving``'s counters."""
    metrics.registry.register(ServingCollector(serving, metrics))
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", summary="Prometheus metrics (text exposition format)",
                response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


# --- per-request id, log line and HTTP metrics -------------------------------------------------------

_tracer = trace.get_tracer("lakehouse.api")


def tracing_on() -> bool:
    """Has a tracer provider been installed (``serving.tracing.configure_tracing``)? Until then every span
    would be OpenTelemetry's no-op."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


class RequestObservability:
    """ASGI middleware: request id in and out, one access log line, the HTTP metrics and a trace span (with the
    request id; a no-op unless tracing is configured, serving/tracing.py) per request.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware: it adds no task and no body copy per request,
    which matters on the cached path (a few hundred microseconds in all)."""

    def __init__(self, app: Any, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = incoming.decode("latin-1") if incoming and _REQUEST_ID.match(incoming.decode("latin-1")) \
            else uuid.uuid4().hex
        fields: dict[str, Any] = {"request_id": request_id, "scope": scope}
        token = _request.set(fields)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                for key, value in headers:
                    if key == b"x-cache":
                        fields["cache"] = value.decode("latin-1")
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        method = scope["method"]
        span = span_token = None
        if tracing_on():  # off: not even a no-op span (headers copied, context attached) on the cached path
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            span = _tracer.start_span(f"{method} {scope['path']}", context=propagate.extract(carrier),
                                      kind=trace.SpanKind.SERVER,
                                      attributes={"http.request.method": method, "url.path": scope["path"],
                                                  "lakehouse.request_id": request_id})
            span_token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = current_route()
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.StatusCode.ERROR)
                if fields.get("tenant") or (scope.get("state") or {}).get("tenant"):
                    span.set_attribute("lakehouse.tenant", fields.get("tenant") or scope["state"]["tenant"])
                otel_context.detach(span_token)
                span.end()
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(seconds)
            line = {"request_id": request_id, "method": method, "path": scope["path"], "status": status,
                    "duration_ms": round(seconds * 1000, 2)}
            state = scope.get("state") or {}
            tenant = fields.get("tenant") or state.get("tenant")
            if tenant:
                line["tenant"] = tenant
            if "cache" in fields:
                line["cache"] = fields["cache"]
            access_log.info("%s %s %s %.1fms", method, scope["path"], status, seconds * 1000, extra={"fields": line})
            _request.reset(token)
