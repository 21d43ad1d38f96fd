"""Kafka through FastStream: consumers that validate, dedupe-friendly, retry, and dead-letter.

A message that can never be processed (not JSON, not an envelope, payload not matching its contract,
a version this consumer does not know, or a handler that keeps failing) goes to `<topic>.dlq` with
the reason in its headers, and the consumer goes on with the next message.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from pydantic import ValidationError

from contracts import TOPICS, Envelope, Message
from servicekit.settings import Settings

log = logging.getLogger("servicekit.bus")
Handler = Callable[[Envelope, Message], Awaitable[None]]


def make_broker(settings: Settings, tracer_provider) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        enable_idempotence=True,
        acks="all",
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=tracer_provider)],
        logger=logging.getLogger(f"{settings.service_name}.kafka"),
    )


async def ensure_topics(settings: Settings, logical_names: set[str]) -> None:
    """Creates the topics (and their dead-letter twins) with the registry's partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=f"{settings.service_name}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for name in logical_names:
            spec = TOPICS[name]
            for physical in (settings.topic(spec.name), settings.topic(spec.dlq)):
                if physical not in existing:
                    wanted.append(NewTopic(physical, num_partitions=settings.topic_partitions or spec.partitions, replication_factor=settings.kafka_replication_factor))
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another replica created it first
    finally:
        await admin.close()


def _raw(msg):  # FastStream decoder: keep the bytes, we validate them ourselves
    return msg.body


def _both(first: Handler, second: Handler) -> Handler:
    async def both(env, payload) -> None:  # retried as one: handlers are idempotent
        await first(env, payload)
        await second(env, payload)
    return both


class Consumer:
    """One consumer group (the service) on one topic, dispatching by message type to handlers."""

    def __init__(self, broker: KafkaBroker, settings: Settings, topic: str, handlers: dict[type[Message], Handler]):
        self.broker, self.settings, self.logical = broker, settings, topic
        self.topic, self.dlq = settings.topic(topic), settings.topic(TOPICS[topic].dlq)
        self.handlers = {m.message_type: (m, h) for m, h in handlers.items()}
        broker.subscriber(
            self.topic, group_id=f"{settings.topic_prefix}{settings.service_name}", auto_offset_reset="earliest",
            ack_policy=AckPolicy.ACK, decoder=_raw, title=f"{settings.service_name}:{topic}",
            description="Consumes: " + ", ".join(sorted(self.handlers)) + " (JSON envelope, see contracts)",
        )(self.handle)

    def add(self, handlers: dict[type[Message], Handler]) -> None:
        """More handlers; a type that already has one gets both, in order (a service's own read model next to
        servicekit's deny list: replacing it would silently stop honouring e.g. an ended binding)."""
        for m, h in handlers.items():
            if m.message_type in self.handlers:
                h = _both(self.handlers[m.message_type][1], h)
            self.handlers[m.message_type] = (m, h)

    async def handle(self, body: bytes, message: KafkaMessage) -> None:
        try:
            decoded = decode(message.body, {t: model for t, (model, _) in self.handlers.items()})
        except Undeliverable as e:
            return await self.dead_letter(message, str(e))
        if decoded is None:
            return  # a message type this service does not consume
        env, payload = decoded
        _, handler = self.handlers[env.event_type]
        last: Exception | None = None
        for attempt in range(self.settings.consumer_max_attempts):
            try:
                await handler(env, payload)
                return
            except Exception as e:  # retried, then dead-lettered: never a silent drop
                last = e
                log.warning("handler failed", extra={"fields": {"event_id": env.event_id, "attempt": attempt + 1, "error": repr(e)}})
                await asyncio.sleep(0.2 * 2**attempt)
        await self.dead_letter(message, f"handler failed {self.settings.consumer_max_attempts} times: {last!r}")

    async def dead_letter(self, message, reason: str) -> None:
        rec = message.raw_message
        log.error("message dead-lettered", extra={"fields": {"topic": rec.topic, "offset": rec.offset, "reason": reason}})
        await self.broker.publish(message.body, self.dlq, key=rec.key,
                                  headers=dead_letter_headers(self.settings.service_name, rec, reason))


class Undeliverable(Exception):
    """A message no retry can ever process; the text is its dead-letter reason."""


def decode(raw: bytes, models: dict[str, type[Message]]) -> tuple[Envelope, Message] | None:
    """The envelope and payload of a record for a consumer of `models` (message type -> model), or None when the
    consumer takes no message of this type. Raises Undeliverable for what must go to the dead-letter topic: not
    JSON, not an envelope, a newer version than the model's, a payload that does not match its contract."""
    try:
        env = Envelope.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as e:
        raise Undeliverable(f"not a valid envelope: {_short(e)}") from None
    model = models.get(env.event_type)
    if model is None:
        return None
    if env.schema_version > model.version:
        raise Undeliverable(f"{env.event_type} v{env.schema_version} is newer than v{model.version} known here")
    try:
        return env, model.model_validate(env.payload)
    except ValidationError as e:
        raise Undeliverable(f"payload is not a valid {env.event_type}: {_short(e)}") from None


def dead_letter_headers(consumer: str, record, reason: str) -> dict[str, str]:
    """What a dead letter carries besides the original bytes: why, who gave up, and where it came from."""
    return {"x-dlq-reason": reason[:2000], "x-dlq-consumer": consumer,
            "x-dlq-source": f"{record.topic}/{record.partition}/{record.offset}"}


def _short(e: Exception) -> str:
    return str(e).replace("\n", " ")[:500]
