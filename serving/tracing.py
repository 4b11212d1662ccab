"""OpenTelemetry tracing of the API: off unless ``LAKEHOUSE_OTEL_ENDPOINT`` names an OTLP/HTTP collector.

The spans themselves are made where the work is (``serving.observability.RequestObservability``: one
server span per request, with its request id, route, status and tenant; ``serving.query.engine``: one
span per hot or lake query, with its tier, table and range). Without a configured provider they are
OpenTelemetry's no-ops, so tracing costs nothing when it is off. An incoming ``traceparent`` header
makes the request's span a child of the caller's trace.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from common.settings import Settings

log = logging.getLogger(__name__)


def configure_tracing(settings: Settings, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install a tracer provider exporting to the configured collector (or ``exporter``); None when off."""
    if exporter is None:
        if not settings.otel_endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint, timeout=5)
    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    log.info("tracing on: spans exported over OTLP/HTTP to %s", settings.otel_endpoint or exporter)
    return provider
