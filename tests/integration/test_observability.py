"""Observability (issue 15, item 6): one dispatch through the gateway, the dispatch service and the real budget
service, exported over OTLP to a receiver in the test — its spans share one trace id across HTTP -> Kafka ->
consumer -> Kafka -> consumer — and the metrics (request durations per route, consumer lag, outbox, dead letters,
retries, the saga's states) arrive over OTLP and read the same at each service's `/metrics`."""
from __future__ import annotations

import httpx
from aiokafka import AIOKafkaProducer

from tests.integration.saga_world import FRAME, SagaWorld, agency, request_body, staff
from tests.otlp_receiver import OtlpReceiver
from tests.support import eventually, service_port

OTLP_ENV = {"OTEL_METRIC_EXPORT_INTERVAL": "500", "METRICS_REFRESH_SECONDS": "0.5",
            "DISPATCH_STATES_REFRESH_SECONDS": "0.5"}


async def test_one_dispatch_is_one_trace_over_otlp_and_its_metrics_are_exported_and_scraped(services, gateway,
                                                                                              infra, ns):
    with OtlpReceiver() as otlp:
        env = {**OTLP_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint}
        budget = services("budget", port=service_port("budget"), **env)
        dispatch = services("dispatch", port=service_port("dispatch"), **env)
        async with SagaWorld(infra, ns) as world, httpx.AsyncClient(base_url=gateway, timeout=20) as http:
            await world.platform(budget.url, dispatches_fit=5)
            await world.expert()
            await world.bind("biz-obs")
            r = await http.post("/api/dispatch/requests", json=request_body("biz-obs"), headers=staff("biz-obs"))
            assert r.status_code == 201, r.text
            dispatch_id = r.json()["dispatch_id"]

            async def approved():
                r = await http.get(f"/api/dispatch/requests/{dispatch_id}", headers=agency())
                return r.json()["status"] == "approved"
            await eventually(approved, timeout=60)

            # --- traces: the request's SERVER span roots one trace that crosses both services and both topics
            def trace():
                server = [s for s in otlp.spans if s["service"] == "dispatch" and s["kind"] == "SERVER"
                          and s["name"] == "POST /requests"]
                if not server:
                    return None
                tid = server[0]["trace_id"]
                got = {(s["service"], s["kind"], s["name"]) for s in otlp.spans if s["trace_id"] == tid}
                wanted = {("dispatch", "SERVER", "POST /requests"),
                          ("dispatch", "PRODUCER", f"{ns.topic('budget.commands')} publish"),
                          ("budget", "CONSUMER", f"{ns.topic('budget.commands')} process"),
                          ("budget", "PRODUCER", f"{ns.topic('budget.events')} publish"),
                          ("dispatch", "CONSUMER", f"{ns.topic('budget.events')} process")}
                return got if wanted <= got else None
            await eventually(lambda: _now(trace()), timeout=30)

            # --- a dead letter, so that the counter is seen to move
            bad = AIOKafkaProducer(bootstrap_servers=infra.kafka)
            await bad.start()
            try:
                await bad.send_and_wait(ns.topic("budget.commands"), b"not json", key=FRAME.encode())
            finally:
                await bad.stop()

            # --- metrics over OTLP
            def exported():
                routes = otlp.metric("dispatch", "http.server.request.duration", **{
                    "http.route": "/requests", "http.request.method": "POST", "http.response.status_code": 201})
                states = dict((a["status"], v) for a, v in otlp.metric("dispatch", "smeportal.dispatch.requests"))
                lag = otlp.metric("dispatch", "smeportal.consumer.lag",
                                  **{"messaging.destination.name": "budget.events"})
                published = otlp.metric("dispatch", "smeportal.outbox.published",
                                        **{"messaging.destination.name": "budget.commands"})
                acked = otlp.metric("dispatch", "smeportal.outbox.publish.duration",  # a histogram: its count
                                    **{"messaging.destination.name": "budget.commands"})
                dead = otlp.metric("budget", "smeportal.dead_letters",
                                   **{"messaging.destination.name": "budget.commands"})
                ok = (routes and routes[0][1] == 1 and states.get("approved") == 1 and states.get("accepted") == 0
                      and len(lag) == 3 and published and published[0][1] >= 1 and dead and dead[0][1] == 1
                      and acked and acked[0][1] >= 1
                      and otlp.metric("budget", "smeportal.messages.retried")
                      and otlp.metric("dispatch", "smeportal.outbox.depth", collection="dispatches"))
                return ok
            try:
                await eventually(lambda: _now(exported()), timeout=30)
            except AssertionError:
                raise AssertionError(f"metric points received: {sorted(otlp.points.items())}") from None

        # --- the same figures at /metrics (Prometheus text), on the service's own port; not through the gateway
        text = httpx.get(f"{dispatch.url}/metrics").text
        assert _sample(text, "smeportal_dispatch_requests", 'status="approved"') == 1
        assert _sample(text, "http_server_request_duration_seconds_count", 'http_route="/requests"',
                       'http_request_method="POST"', 'http_response_status_code="201"') == 1
        assert _sample(text, "smeportal_consumer_lag", 'messaging_destination_name="budget.events"') is not None
        assert _sample(httpx.get(f"{budget.url}/metrics").text, "smeportal_dead_letters_total",
                       'messaging_destination_name="budget.commands"') == 1
        r = httpx.get(f"{gateway}/api/dispatch/metrics")
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


async def _now(value):
    return value


def _sample(text: str, name: str, *labels: str) -> float | None:
    """The value of the first sample of `name` whose labels include all of `labels`."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return None
