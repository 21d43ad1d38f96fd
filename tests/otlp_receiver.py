"""A tiny OTLP/HTTP receiver for tests: what a collector or Jaeger would get from the services, decoded.

It accepts `POST /v1/traces` and `POST /v1/metrics` (protobuf, optionally gzip), as the services' exporters send them
when `OTEL_EXPORTER_OTLP_ENDPOINT` points at it, and keeps the spans and the latest value of every metric point.
"""
from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (ExportMetricsServiceRequest,
                                                                            ExportMetricsServiceResponse)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                        ExportTraceServiceResponse)

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


class OtlpReceiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.spans: list[dict] = []
        self.points: dict[tuple, float] = {}  # (service, metric name, sorted attributes) -> latest value
        self.requests = {"traces": 0, "metrics": 0}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver._traces(ExportTraceServiceRequest.FromString(body))
                    answer = ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    receiver._metrics(ExportMetricsServiceRequest.FromString(body))
                    answer = ExportMetricsServiceResponse()
                else:
                    self.send_error(404)
                    return
                data = answer.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _traces(self, req: ExportTraceServiceRequest) -> None:
        spans = []
        for rs in req.resource_spans:
            service = _attrs(rs.resource.attributes).get("service.name")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append({"service": service, "name": s.name, "kind": KINDS.get(s.kind, str(s.kind)),
                                  "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                  "parent_id": s.parent_span_id.hex() or None, "attributes": _attrs(s.attributes)})
        with self.lock:
            self.spans.extend(spans)
            self.requests["traces"] += 1

    def _metrics(self, req: ExportMetricsServiceRequest) -> None:
        with self.lock:
            self.requests["metrics"] += 1
            for rm in req.resource_metrics:
                service = _attrs(rm.resource.attributes).get("service.name")
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        data = getattr(m, m.WhichOneof("data"))
                        for p in data.data_points:
                            if hasattr(p, "as_int") or hasattr(p, "as_double"):
                                value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                            else:  # histogram: its count of observations
                                value = p.count
                            key = (service, m.name, tuple(sorted(_attrs(p.attributes).items())))
                            self.points[key] = value

    def metric(self, service: str, name: str, **attrs) -> list[tuple[dict, float]]:
        """(attributes, latest value) of every point of `name` from `service` whose attributes include `attrs`."""
        with self.lock:
            return [(dict(a), v) for (s, n, a), v in self.points.items()
                    if s == service and n == name and attrs.items() <= dict(a).items()]
