"""OpenTelemetry: a tracer provider per service, HTTP server spans, and a JSON-lines span exporter.

Kafka hops are traced by FastStream's KafkaTelemetryMiddleware (trace context in message headers);
FastAPI's native telemetry (configured in `service.Service`) joins an incoming `traceparent` on HTTP,
so one trace spans HTTP -> Kafka -> consumer.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


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
