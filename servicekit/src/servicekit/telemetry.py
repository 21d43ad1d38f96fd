"""OpenTelemetry: a tracer and a meter provider per service, exported over OTLP and readable at `/metrics`.

Traces: FastAPI's native telemetry (configured in `service.Service`) opens a SERVER span per request and joins an
incoming `traceparent`; the outbox stores the context of the write, the relay's producer (servicekit.publisher)
puts its PRODUCER span's context in the record's headers, and FastStream's KafkaTelemetryMiddleware continues it in
the consumer, so one trace spans HTTP -> Kafka -> consumer. Spans go
- over OTLP/HTTP (protobuf) to `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://127.0.0.1:4318`, Jaeger or any
  collector), batched, when that variable is set;
- as JSON lines to `OTEL_SPANS_FILE` when that is set (tests and `jq` read it), whatever else is configured.

Metrics (names in the README): one MeterProvider with two readers, a Prometheus reader that `/metrics` renders in
the Prometheus text format, and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, a periodic OTLP exporter
(`OTEL_METRIC_EXPORT_INTERVAL` ms, the SDK's variable, default 60,000).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult


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


def _resource(service: str) -> Resource:
    return Resource.create({"service.name": service, "service.namespace": "smeportal"})


def setup_tracing(service: str, spans_file: str = "", otlp_endpoint: str = "") -> TracerProvider:
    provider = TracerProvider(resource=_resource(service))
    if spans_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans_file)))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_signal_url(otlp_endpoint, "traces"))))
    trace.set_tracer_provider(provider)
    return provider


class Metrics:
    """A meter provider read by `/metrics` (Prometheus text, `text()`) and, with an endpoint, pushed over OTLP."""

    def __init__(self, service: str, otlp_endpoint: str = ""):
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=True)  # this service's own, not the process-global one
        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry)]
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=_signal_url(otlp_endpoint, "metrics"))))
        self.provider = MeterProvider(resource=_resource(service), metric_readers=readers)
        self.meter = self.provider.get_meter("smeportal")

    def text(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text exposition format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=3000)


def _signal_url(endpoint: str, signal: str) -> str:
    """OTLP/HTTP's rule for the base endpoint variable: `<endpoint>/v1/<signal>`."""
    return f"{endpoint.rstrip('/')}/v1/{signal}"
