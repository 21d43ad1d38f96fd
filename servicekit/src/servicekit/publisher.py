"""The outbox relay's producer: publishes stored events with aiokafka directly, one PRODUCER span each.

Why not the broker's `publish`: FastStream wraps every publish in its telemetry middleware (a "create" and a
"publish" span, baggage handling and two metric recordings per message). The relay publishes every event the
services produce, so that was about a third of the budget service's CPU under load. Here each event gets the one
span a trace needs, `<topic> publish` (kind PRODUCER), a child of the write that stored the event (the relay makes
that context current), and its `traceparent` goes in the record's headers, so the consumer's span continues the same
trace as before. What the relay published is counted by `smeportal.outbox.published` (servicekit.metrics), and the
time from handing an event to the producer until Kafka acknowledged it is `smeportal.outbox.publish.duration`.

Same guarantees as the broker's producer: `acks="all"` and idempotence (per-partition order kept across retries).
Dead letters and everything else still go through the FastStream broker.
"""
from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from opentelemetry import propagate, trace

from servicekit.settings import Settings


class RelayPublisher:
    def __init__(self, settings: Settings, tracer_provider, meter):
        self.settings = settings
        self.tracer = trace.get_tracer("servicekit.outbox", tracer_provider=tracer_provider)
        self.duration = meter.create_histogram(
            "smeportal.outbox.publish.duration", unit="s",
            description="From handing an outbox event to the producer until Kafka acknowledged it")
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                         client_id=f"{self.settings.service_name}-outbox", acks="all",
                                         enable_idempotence=True)
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def publish(self, topic: str, key: str, value: str, headers: dict) -> asyncio.Future:
        """Hands the record to the producer (in call order) and returns the future of Kafka's acknowledgement."""
        if self.producer is None:
            raise RuntimeError("the relay's producer is not started")
        with self.tracer.start_as_current_span(f"{topic} publish", kind=trace.SpanKind.PRODUCER, attributes={
                "messaging.system": "kafka", "messaging.destination.name": topic, "messaging.operation": "publish",
                "messaging.kafka.message.key": key}):
            carrier = dict(headers or {})
            propagate.inject(carrier)
            began = time.perf_counter()
            acked = await self.producer.send(topic, value.encode(), key=key.encode(),
                                             headers=[(k, v.encode()) for k, v in carrier.items()])
        logical = self.settings.logical(topic)
        acked.add_done_callback(lambda f: f.cancelled() or f.exception() or self.duration.record(
            time.perf_counter() - began, {"messaging.destination.name": logical}))
        return acked
