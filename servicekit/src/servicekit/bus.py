"""Kafka through FastStream: consumers that validate, dedupe-friendly, retry, and dead-letter.

A message that can never be processed (not JSON, not an envelope, a type no topic carries, no key, payload
not matching its contract, a version this consumer does not know, or a handler that keeps failing for a
reason of its own) goes to `<topic>.dlq` with the reason and its original headers, and the consumer goes
on with the next message.

A failure of a dependency (the database or the broker does not answer, see `servicekit.faults`) is no
reason to give up on a message: the consumer pauses on it and retries with capped exponential backoff
until the dependency is back, however long that takes, and readiness reports it meanwhile.

A consumer with batch handlers (`Consumer(..., batch_handlers=...)`) takes what one poll returns (up to
`consumer_batch_max` records) and hands consecutive runs of messages of batch-capable types to their batch
handler in one call, in the order they arrived (so order per key holds); other types in the same poll go
one by one to their single-message handler, in between. A batch that fails for a reason of its own is
applied again message by message through the single-message handlers, so a bad message is retried and
dead-lettered alone and the rest of its batch is applied. Batch handlers must be idempotent per message,
as single ones are: a batch retried after a dependency failure is applied again.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import chain

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.subscriber.usecase import BatchSubscriber
from opentelemetry import propagate, trace
from pydantic import ValidationError

from contracts import TOPICS, Envelope, Message
from contracts.registry import message_types
from servicekit.faults import Health, backoff, dependency_of
from servicekit.settings import Settings

log = logging.getLogger("servicekit.bus")
KNOWN_TYPES = frozenset(message_types())  # every message type some topic of the registry carries
Handler = Callable[[Envelope, Message], Awaitable[None]]
BatchHandler = Callable[[list[tuple[Envelope, Message]]], Awaitable[None]]
# inside a batch handler: event id -> that message's CONSUMER span, for `processing`
_batch_spans: ContextVar[dict[str, trace.Span]] = ContextVar("batch_spans", default={})


@contextmanager
def processing(env: Envelope) -> Iterator[None]:
    """Inside a batch handler, around the work of one message: makes that message's CONSUMER span (opened by the
    consumer in the message's own trace, see `Consumer.apply_run`) the current one, so the events the work causes,
    whose outbox entries keep the current context, continue the message's trace. Outside a batch it does nothing."""
    span = _batch_spans.get().get(env.event_id)
    if span is None:
        yield
        return
    with trace.use_span(span, end_on_exit=False):
        yield


async def _poll_batch(self, consumer) -> tuple:
    """A batch subscriber's poll (replaces FastStream 0.7's `BatchSubscriber.get_msg`, which sleeps as long again as
    the poll waited whenever it found nothing: with a short wait for low latency, an idle batch consumer woke 100 times
    a second, ~7% of a core for the dispatch service at rest). aiokafka's `getmany` already waits up to its timeout
    and returns as soon as records come, so a long wait costs no latency; the sleep is kept only for a poll that came
    back empty early (no partitions assigned yet), so that never spins."""
    started = time.monotonic()
    messages = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
    if messages:
        return tuple(chain(*messages.values()))
    if time.monotonic() - started < self.batch_timeout_ms / 2000:
        await asyncio.sleep(self.batch_timeout_ms / 1000)
    return ()


BatchSubscriber.get_msg = _poll_batch


def make_broker(settings: Settings, tracer_provider, meter_provider=None) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        enable_idempotence=True,
        acks="all",
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=tracer_provider, meter_provider=meter_provider)],
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


async def _raw(msg):
    """FastStream decoder: keep the bytes, we validate them ourselves. A coroutine function: FastStream runs a plain
    function decoder in a worker thread, one thread hop per message."""
    return msg.body


def _both(first: Handler, second: Handler) -> Handler:
    async def both(env, payload) -> None:  # retried as one: handlers are idempotent
        await first(env, payload)
        await second(env, payload)
    return both


class Consumer:
    """One consumer group (the service) on one topic, dispatching by message type to handlers."""

    def __init__(self, broker: KafkaBroker, settings: Settings, topic: str, handlers: dict[type[Message], Handler],
                 health: Health | None = None, batch_handlers: dict[type[Message], BatchHandler] | None = None,
                 tracer_provider=None, batched: bool = False, max_records: int | None = None):
        self.broker, self.settings, self.logical = broker, settings, topic
        self.tracer = trace.get_tracer("servicekit.bus", tracer_provider=tracer_provider)
        self.topic, self.dlq = settings.topic(topic), settings.topic(TOPICS[topic].dlq)
        self.handlers = {m.message_type: (m, h) for m, h in handlers.items()}
        self.batch_handlers = {m.message_type: h for m, h in (batch_handlers or {}).items()}
        if missing := set(self.batch_handlers) - set(self.handlers):
            raise ValueError(f"batch handlers need a single-message handler too (for dead letters): {missing}")
        self.health = health or Health()
        self.dead_letters = 0  # written by this consumer since start (counters for servicekit.metrics)
        self.retries = 0  # handler runs tried again: after a dependency failure, or a failure of their own
        self.batches = 0  # batch handler calls (and the messages they carried), for benchmarks and tests
        self.batched = 0
        batched = batched or bool(self.batch_handlers)  # `batched`: batch handlers may still be added (add)
        self.batched_mode = batched
        options = dict(batch=True, max_records=max_records or settings.consumer_batch_max,
                       batch_timeout_ms=settings.consumer_batch_wait_ms) if batched else {}
        broker.subscriber(
            self.topic, group_id=f"{settings.topic_prefix}{settings.service_name}", auto_offset_reset="earliest",
            heartbeat_interval_ms=settings.consumer_heartbeat_ms, ack_policy=AckPolicy.ACK, decoder=_raw,
            fetch_max_wait_ms=settings.consumer_fetch_wait_ms,
            title=f"{settings.service_name}:{topic}",
            description="Consumes: " + ", ".join(sorted(self.handlers)) + " (JSON envelope, see contracts)"
                        + (" in batches" if batched else ""),
            **options,
        )(self.handle_batch if batched else self.handle)

    def add(self, handlers: dict[type[Message], Handler],
            batch_handlers: dict[type[Message], BatchHandler] | None = None) -> None:
        """More handlers; a type that already has one gets both, in order (a service's own read model next to
        servicekit's deny list: replacing it would silently stop honouring e.g. an ended binding). Batch handlers
        can be added only to a consumer subscribed for batches (`batched`), and only for types with no other
        handler (a batch handler would skip the other one)."""
        batch_handlers = batch_handlers or {}
        if batch_handlers and not self.batched_mode:
            raise ValueError(f"{self.logical}: batch handlers need a consumer created with batched=True")
        for m, h in handlers.items():
            if m.message_type in self.handlers:
                if m.message_type in self.batch_handlers or m in batch_handlers:
                    raise ValueError(f"{m.message_type} has a batch handler: it cannot be shared with another one")
                h = _both(self.handlers[m.message_type][1], h)
            self.handlers[m.message_type] = (m, h)
        for m, h in batch_handlers.items():
            if m not in handlers:
                raise ValueError(f"batch handler of {m.message_type} needs a single-message handler too (dead letters)")
            self.batch_handlers[m.message_type] = h

    def _decode(self, record) -> tuple[Envelope, Message] | None:
        if record.key is None:
            raise Undeliverable("no key: per-aggregate order cannot hold for a keyless message")
        return decode(record.value or b"", {t: model for t, (model, _) in self.handlers.items()})

    async def handle(self, body: bytes, message: KafkaMessage) -> None:
        record = message.raw_message
        try:
            decoded = self._decode(record)
        except Undeliverable as e:
            return await self.dead_letter(record, str(e))
        if decoded is not None:  # None: a registered message type this service does not consume
            await self.apply_one(record, *decoded)

    async def handle_batch(self, bodies: list[bytes], message: KafkaMessage) -> None:
        """What one poll returned, in order: runs of batch-capable messages in one call each, others one by one."""
        run: list[tuple] = []  # (record, envelope, payload) of consecutive messages with the same batch handler
        for record in message.raw_message:
            try:
                decoded = self._decode(record)
            except Undeliverable as e:
                await self.dead_letter(record, str(e))
                continue
            if decoded is None:
                continue
            env, payload = decoded
            batch = self.batch_handlers.get(env.event_type)
            if run and batch is not self.batch_handlers[run[0][1].event_type]:
                await self.apply_run(run)
                run = []
            if batch is None:
                await self.apply_one(record, env, payload)
            else:
                run.append((record, env, payload))
        if run:
            await self.apply_run(run)

    async def apply_run(self, run: list[tuple]) -> None:
        """One batch handler call for `run`. Each message gets a CONSUMER span `<topic> process` in its own trace (a
        child of its producer's span, as FastStream makes for a message consumed alone), open while the batch is
        applied; `processing(env)` makes it current around one message's work."""
        handler = self.batch_handlers[run[0][1].event_type]
        items = [(env, payload) for _, env, payload in run]
        spans: dict[str, trace.Span] = {}
        for record, env, _ in run:
            if env.event_id not in spans:
                ctx = propagate.extract({k: v.decode(errors="replace") for k, v in record.headers or ()})
                spans[env.event_id] = self.tracer.start_span(
                    f"{record.topic} process", context=ctx, kind=trace.SpanKind.CONSUMER,
                    attributes={"messaging.system": "kafka", "messaging.destination.name": record.topic,
                                "messaging.message.id": env.event_id, "messaging.batch.message_count": len(run)})
        token = _batch_spans.set(spans)
        try:
            try:
                await self.until_available(lambda: handler(items), f"batch of {len(items)} from {run[0][1].event_id}")
                self.batches, self.batched = self.batches + 1, self.batched + len(items)
            except Exception as e:  # a failure of the batch's own: each message alone, so only a bad one is dead-lettered
                log.warning("batch failed; applying its messages one by one", extra={"fields": {
                    "topic": self.logical, "messages": len(items), "error": repr(e)}})
                for record, env, payload in run:
                    with processing(env):
                        await self.apply_one(record, env, payload)
        finally:
            _batch_spans.reset(token)
            for span in spans.values():
                span.end()

    async def apply_one(self, record, env: Envelope, payload: Message) -> None:
        _, handler = self.handlers[env.event_type]
        failures = 0
        last: Exception | None = None
        while failures < self.settings.consumer_max_attempts:
            try:
                await self.until_available(lambda: handler(env, payload), env.event_id)
                return
            except Exception as e:  # a permanent failure: retried a few times, then dead-lettered, never dropped
                last, failures = e, failures + 1
                log.warning("handler failed", extra={"fields": {"event_id": env.event_id, "attempt": failures,
                                                                "error": repr(e)}})
                if failures < self.settings.consumer_max_attempts:
                    self.retries += 1
                await asyncio.sleep(0.2 * 2 ** (failures - 1))
        await self.dead_letter(record, f"handler failed {failures} times: {last!r}")

    async def until_available(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        """Runs `step` until it succeeds or fails permanently (raised). While a dependency is down the consumer
        waits on this message: nothing behind it on the partition overtakes it, nothing is dead-lettered."""
        attempt, dependency = 0, None
        try:
            while True:
                try:
                    await step()
                    if attempt:
                        self.health.recovered(dependency)
                        log.info("dependency back; consumer resumed", extra={"fields": {
                            "topic": self.logical, "message": what, "retries": attempt}})
                    return
                except Exception as e:
                    dependency = dependency_of(e)
                    if dependency is None:
                        raise
                    self.health.failed(dependency)
                    self.health.paused.add(self.logical)
                    self.health.retries += 1
                    self.retries += 1
                    delay = backoff(attempt)
                    log.warning("dependency unavailable; consumer paused", extra={"fields": {
                        "topic": self.logical, "message": what, "dependency": dependency,
                        "error_kind": type(e).__name__, "retry_in": delay}})
                    attempt += 1
                    await asyncio.sleep(delay)
        finally:
            self.health.paused.discard(self.logical)

    async def dead_letter(self, rec, reason: str) -> None:
        """Writes the record (aiokafka's ConsumerRecord) to the dead-letter topic with why."""
        log.error("message dead-lettered", extra={"fields": {"topic": rec.topic, "offset": rec.offset, "reason": reason}})
        headers = dead_letter_headers(self.settings.service_name, rec, reason)
        await self.until_available(lambda: self.broker.publish(rec.value or b"", self.dlq, key=rec.key, headers=headers),
                                   f"{rec.topic}/{rec.partition}/{rec.offset}")
        self.dead_letters += 1


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
        if env.event_type not in KNOWN_TYPES:
            raise Undeliverable(f"unknown message type {env.event_type!r}: no topic of the registry carries it")
        return None
    if env.schema_version > model.version:
        raise Undeliverable(f"{env.event_type} v{env.schema_version} is newer than v{model.version} known here")
    try:
        return env, model.model_validate(env.payload)
    except ValidationError as e:
        raise Undeliverable(f"payload is not a valid {env.event_type}: {_short(e)}") from None


def dead_letter_headers(consumer: str, record, reason: str) -> dict[str, str]:
    """What a dead letter carries besides the original bytes: its original headers (trace context, ...), why,
    who gave up, and where it came from (what `servicekit.deadletters replay` sends it back to)."""
    original = {}
    for k, v in record.headers or ():
        if not k.startswith("x-dlq-"):
            original[k] = v.decode(errors="replace") if isinstance(v, bytes) else v
    return {**original, "x-dlq-reason": reason[:2000], "x-dlq-consumer": consumer,
            "x-dlq-source": f"{record.topic}/{record.partition}/{record.offset}"}


def _short(e: Exception) -> str:
    return str(e).replace("\n", " ")[:500]
