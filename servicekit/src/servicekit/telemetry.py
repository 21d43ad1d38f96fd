"""OpenTelemetry: a tracer provider per service, HTTP server spans, and a JSON-lines span exporter.

Kafka hops are traced by FastStream's KafkaTelemetryMiddleware (trace context in message headers);
the HTTP middleware here joins an incoming `traceparent` so one trace spans HTTP -> Kafka -> consumer.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (read by tests and by `jq`)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            lines.append(json.dumps({
                "name": s.name,
                "service": s.resource.attributes.get("service.name"),
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
                "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                "kind": s.kind.name,
                "attributes": {k: str(v) for k, v in (s.attributes or {}).items()},
            }))
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


def setup_tracing(service: str, spans_file: str = "") -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if spans_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans_file)))
    trace.set_tracer_provider(provider)
    return provider


class TracingMiddleware:
    """ASGI middleware: one SERVER span per HTTP request, child of the caller's `traceparent` if any."""

    def __init__(self, app, tracer_provider: TracerProvider):
        self.app = app
        self.tracer = tracer_provider.get_tracer("servicekit.http")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctx = propagate.extract(headers)
        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(name, context=ctx, kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            if rid := headers.get("x-request-id"):
                span.set_attribute("http.request.id", rid)

            async def send_wrapper(message):
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_wrapper)
