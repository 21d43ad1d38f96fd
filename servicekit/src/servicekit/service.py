"""`Service`: the wiring every portal service shares.

    svc = Service("identity", title="Identity", outbox=["businesses"], settings=settings)
    app = svc.app                      # FastAPI: /healthz, /readyz, /metrics, problem documents, tracing
    svc.consume("identity.events", {BusinessRegistered: on_registered})
    await svc.write(col, filter, update, events=[svc.event(msg, actor=...)])   # change + events, one write
"""
from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from pymongo.asynchronous.collection import AsyncCollection

from contracts import Envelope, Message
from servicekit import problems, security_headers
from servicekit.bus import BatchHandler, Consumer, Handler, ensure_topics, make_broker
from servicekit.auth import current_client
from servicekit.faults import Health
from servicekit.logs import setup_logging
from servicekit.metrics import KitMetrics
from servicekit.outbox import OutboxRelay
from servicekit.publisher import RelayPublisher
from servicekit.reads import ByIds, Inserts
from servicekit.settings import Settings
from servicekit.store import connect, outbox_entry, with_outbox
from servicekit.telemetry import Metrics, setup_tracing

# Not traced and not counted: probes and scrapes would drown the requests people make.
UNOBSERVED_PATHS = ("/healthz", "/readyz", "/metrics")


def settle_gc() -> None:
    """Once started: everything alive now (modules, the app, routes, models, clients: hundreds of thousands of
    objects that live as long as the process) is moved out of the cyclic garbage collector's reach (`gc.freeze`).
    Its full collections traversed all of them every second or two under load with the event loop stopped, and found
    nothing: in a 25 s run of bench/dispatch.py the dispatch service made 16 of 65–134 ms (1.5 s), after this 17 of
    ~20 ms (0.34 s). Each was a pause that every request and consumer batch in flight waited behind."""
    gc.collect()
    gc.freeze()


class Service:
    def __init__(self, name: str, *, title: str, outbox: list[str] = (), produces: list[str] = (),
                 settings: Settings | None = None, honour_revocations: bool = True, batched: tuple[str, ...] = (),
                 batch_max: dict[str, int] | None = None):
        """`batched`: topics whose consumer takes what a poll returns, so `consume(topic, ..., batch=...)` may add batch
        handlers even after servicekit's own handlers (the deny list on identity.events) created the consumer.
        `batch_max`: records per poll of a topic's batch consumer, where not `consumer_batch_max` (a bulk flow whose
        per-batch writes are shared, such as learning imported profiles, gains from larger ones)."""
        self.name = name
        self.batched = frozenset(batched)
        self.batch_max = dict(batch_max or {})
        self.settings = settings or Settings(service_name=name)
        setup_logging(name, self.settings.log_level)
        self.log = logging.getLogger(name)
        otlp = self.settings.otel_exporter_otlp_endpoint
        self.tracer_provider = setup_tracing(name, self.settings.otel_spans_file, otlp)
        self.metrics = Metrics(name, otlp)
        self.meter = self.metrics.meter  # services add their own instruments (e.g. dispatch's saga states)
        self.broker = make_broker(self.settings, self.tracer_provider, self.metrics.provider)
        self.health = Health()  # which dependency is down now: readiness, fast 503s, paused consumers
        self.mongo = connect(self.settings.mongo_uri, self.settings.mongo_timeout_ms)
        self.db = self.mongo[self.settings.database]
        self._readers: dict[tuple, ByIds] = {}
        self._inserters: dict[tuple[str, str], Inserts] = {}
        self.topics: set[str] = set(produces)
        self._consumers: dict[str, Consumer] = {}
        self.read_models: dict[str, tuple[str, tuple[type[Message], ...], tuple[str, ...]]] = {}
        self._startup: list = []
        self._background: dict[str, object] = {}  # name -> async function, run as a task while the app runs
        self._document_publishers(produces)
        self.publisher = RelayPublisher(self.settings, self.tracer_provider, self.meter)
        self.relay = OutboxRelay(self.publisher.publish, [self.db[c] for c in outbox], self.db.audit,
                                 self.settings.outbox_poll_seconds, self.settings.fault_crash_before_publish,
                                 health=self.health, clear_after=self.settings.outbox_clear_after_seconds,
                                 scan_seconds=self.settings.outbox_scan_seconds)
        # FastAPI's native OpenTelemetry: one SERVER span per request, joining an incoming `traceparent`, and the
        # request metrics (`http.server.request.duration` per route, method and status; `http.server.active_requests`).
        self.app = FastAPI(title=f"SME portal — {title}", lifespan=self._lifespan, telemetry={
            "tracer_provider": self.tracer_provider, "meter_provider": self.metrics.provider, "metrics": True,
            "logs": False, "operation_spans": False, "exclude": lambda scope: scope.get("path") in UNOBSERVED_PATHS})
        self.app.state.settings = self.settings
        self.app.state.service = self
        problems.install(self.app, self.health)
        security_headers.install(self.app)
        self._health_routes()
        self.kit_metrics = KitMetrics(self)
        if honour_revocations:
            self._honour_revocations()

    # --- events -----------------------------------------------------------------------------
    def event(self, message: Message, *, actor: str | None = None, cause: Envelope | None = None,
              event_id: str | None = None) -> dict:
        """An outbox entry for `message`, to be written together with the state change it belongs to."""
        env = Envelope.wrap(message, producer=self.name, actor=actor, client_id=current_client.get(),
                            correlation_id=(cause.correlation_id or cause.event_id) if cause else None,
                            causation_id=cause.event_id if cause else None, event_id=event_id)
        return outbox_entry(env, self.settings.topic(message.topic))

    def nothing_to_publish(self, outbox: list[dict] | None) -> bool:
        """Whether a document's outbox as read holds nothing left to publish: empty, or only entries this service's
        relay has published (and clears itself). False when the read left the outbox out (None)."""
        return outbox is not None and self.relay.settled(outbox)

    async def write(self, col: AsyncCollection, filter: dict, update: dict, *, events: list[dict] = (),
                    upsert: bool = False, outbox_was_empty: bool = False):
        """One atomic update carrying the change and its events; the relay publishes them right after.
        `outbox_was_empty`: the filter guards the version the caller read, and the document's outbox held nothing to
        publish then (`nothing_to_publish`). Every write that adds entries moves the version, so a match means the
        outbox now holds `events` and at most entries already published: they are handed to the relay
        (`OutboxRelay.kick`) instead of being read back."""
        res = await col.update_one(filter, with_outbox(update, list(events)), upsert=upsert)
        if events:
            doc_id = filter.get("_id")
            if doc_id is None or isinstance(doc_id, dict):
                doc_id = res.upserted_id
            self.relay.kick(col, doc_id, list(events) if outbox_was_empty and res.matched_count == 1 else None)
        return res

    async def insert(self, col: AsyncCollection, doc: dict, *, events: list[dict] = ()) -> None:
        """Inserts a new aggregate together with its events (one atomic write), in the same command as what concurrent
        requests insert into `col` (`inserts`); raises what `insert_one` would."""
        full = {**doc, "_outbox": list(events)}
        await self.inserts(col).one(full)
        if events:
            self.relay.kick(col, full["_id"], list(events))

    def inserts(self, col: AsyncCollection) -> Inserts:
        """The service's shared inserter into `col`: concurrent requests' new documents go out as one `insert_many`
        (servicekit.reads)."""
        key = (col.database.name, col.name)
        if (inserter := self._inserters.get(key)) is None:
            inserter = self._inserters[key] = Inserts(col)
        return inserter

    def consume(self, topic: str, handlers: dict[type[Message], Handler],
                batch: dict[type[Message], BatchHandler] | None = None) -> Consumer:
        """Handlers for message types on `topic`; one consumer (group = this service) per topic. `batch`: handlers
        of a list of (envelope, message) for types that can be applied together (the consumer then takes what a
        poll returns; see servicekit.bus), declared with the topic's first `consume` or the topic named in the
        service's `batched`."""
        self.topics.add(topic)
        if topic in self._consumers:
            if batch and not self._consumers[topic].batched_mode:
                raise ValueError(f"batch handlers for {topic} must come with its first consume() "
                                 f"(or name {topic} in Service(batched=...))")
            self._consumers[topic].add(handlers, batch)
        else:
            self._consumers[topic] = Consumer(self.broker, self.settings, topic, handlers, self.health, batch,
                                              self.tracer_provider, batched=topic in self.batched,
                                              max_records=self.batch_max.get(topic))
        return self._consumers[topic]

    @property
    def consumers(self) -> dict[str, Consumer]:
        """The consumer of each consumed topic (logical name)."""
        return self._consumers

    def read_model(self, name: str, topic: str, types: list[type[Message]], collections: list[str]) -> None:
        """Declares `collections` a read model kept only by this service's handlers of `types` on `topic`, so
        `python -m servicekit.rebuild <service> <name>` can empty them and replay the topic into them (R-OPS-02)."""
        self.read_models[name] = (topic, tuple(types), tuple(collections))

    def on_startup(self, hook):
        """Registers `async def hook()` to run at start-up (indexes, seed data), before consuming starts."""
        self._startup.append(hook)
        return hook

    def background(self, name: str):
        """Registers `async def job()` (a loop: sweeps, mail delivery) to run while the service runs;
        it starts after the start-up hooks and is cancelled at shutdown."""
        def register(job):
            self._background[name] = job
            return job
        return register

    def by_ids(self, collection: str, projection: dict | None = None) -> ByIds:
        """The service's shared reader of `collection` by `_id` (one per collection and projection): concurrent
        requests' reads go out together (servicekit.reads)."""
        key = (collection, tuple(sorted((projection or {}).items())))
        reader = self._readers.get(key)
        if reader is None or reader.col.database is not self.db:  # (tests may point the service at another database)
            reader = self._readers[key] = ByIds(self.db[collection], projection)
        return reader

    # --- revocation everywhere (R-ID-06, R-ID-09) -------------------------------------------------
    def _honour_revocations(self) -> None:
        """Every service keeps a deny list from identity's events: revoked accounts, tokens and clients make a token
        useless; an ended binding, withdrawn consent or revoked delegation takes that business out of it."""
        from contracts.events import identity as ev
        from servicekit.store import apply_once

        def mark(key_of, struck_if=lambda e: True):
            async def handler(env: Envelope, e) -> None:
                await apply_once(self.db.revoked_subjects, key_of(e), env.event_id,
                                 {"$set": {"struck": struck_if(e), "type": env.event_type, "at": env.occurred_at}})
            return handler

        self.read_model("deny-list", "identity.events", [
            ev.AccountRevoked, ev.TokenRevoked, ev.ClientRevoked, ev.DelegationRevoked, ev.BindingChanged,
            ev.ConsentWithdrawn, ev.ConsentGranted], ["revoked_subjects"])
        self.consume("identity.events", {
            ev.AccountRevoked: mark(lambda e: e.account_id),
            ev.TokenRevoked: mark(lambda e: f"jti:{e.jti}"),
            ev.ClientRevoked: mark(lambda e: f"client:{e.client_id}"),
            ev.DelegationRevoked: mark(lambda e: f"dlg:{e.delegation_id}"),
            ev.BindingChanged: mark(lambda e: f"bind:{e.business_id}:{e.account_id}", lambda e: e.role is None),
            ev.ConsentWithdrawn: mark(lambda e: f"consent:{e.business_id}:{e.client_id}"),
            ev.ConsentGranted: mark(lambda e: f"consent:{e.business_id}:{e.client_id}", lambda e: False),
        })

    async def struck(self, claims: dict) -> set[str]:
        """What of this token the deny list strikes: 'account', 'token', 'client', 'biz:<id>', 'dlg:<id>'
        (identity overrides this with its own records)."""
        from servicekit.auth import deny_keys

        keys = deny_keys(claims)
        found = await self.by_ids("revoked_subjects", {"struck": 1}).many(keys)
        return {keys[k] for k, d in found.items() if d.get("struck") is not False}

    def _document_publishers(self, topics) -> None:
        """Declares what this service publishes, so the generated AsyncAPI document shows it (the outbox
        relay does the actual publishing)."""
        from contracts import TOPICS

        for t in topics:
            for model in TOPICS[t].models:
                self.broker.publisher(self.settings.topic(t), title=f"{t}:{model.message_type}",
                                      description=model.__doc__, schema=model)

    # --- lifecycle --------------------------------------------------------------------------
    @asynccontextmanager
    async def _lifespan(self, app: FastAPI):
        await self._wait_for_kafka()
        await ensure_topics(self.settings, self.topics)
        for hook in self._startup:
            await hook()
        await self._start_consumers()
        await self.publisher.start()
        self.relay.start()
        tasks = [asyncio.create_task(job(), name=name) for name, job in self._background.items()]
        tasks.append(asyncio.create_task(self.kit_metrics.run(), name="consumer-lag"))
        tasks.append(asyncio.create_task(self._probe_while_down(), name="dependency-probe"))
        settle_gc()
        self.log.info("started", extra={"fields": {"database": self.settings.database}})
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.relay.stop()
            await self.publisher.stop()
            await self.broker.stop()
            await self.mongo.close()
            self.tracer_provider.shutdown()  # flushes the spans still batched for OTLP
            self.metrics.shutdown()

    async def _start_consumers(self) -> None:
        """What `KafkaBroker.start()` does (FastStream 0.7: connect, start each subscriber, then each publisher), but
        with the subscribers started together: one after another, each that joins the service's group makes those
        before it rejoin (a round per consumer); together they join in one or two."""
        await self.broker.connect()
        await asyncio.gather(*(sub.start() for sub in self.broker.subscribers))
        for pub in self.broker.publishers:
            await pub.start()
        self.broker.running = True

    async def _wait_for_kafka(self, seconds: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            try:
                await ensure_topics(self.settings, set())
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(1)

    def dead_letters(self) -> int:
        """Dead letters written by this process's consumers since start (for metrics)."""
        return sum(c.dead_letters for c in self._consumers.values())

    async def _probe_while_down(self, every: float = 1.0) -> None:
        """While the database is marked down (requests then get 503 at once), pings it until it answers."""
        while True:
            await asyncio.sleep(every)
            if not self.health.is_down("mongodb"):
                continue
            try:
                await asyncio.wait_for(self.mongo.admin.command("ping"), 2)
            except Exception:
                continue
            self.health.recovered("mongodb")
            self.log.info("database answers again")

    def _health_routes(self) -> None:
        @self.app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
        async def healthz():
            return {"status": "ok", "service": self.name}

        @self.app.get("/readyz", tags=["health"], summary="Readiness: Kafka and MongoDB answer")
        async def readyz():
            checks = {}
            try:
                await asyncio.wait_for(self.mongo.admin.command("ping"), 3)
                checks["mongodb"] = "ok"
                self.health.recovered("mongodb")
            except Exception as e:
                checks["mongodb"] = f"failed: {type(e).__name__}"
                self.health.failed("mongodb")
            try:
                checks["kafka"] = "ok" if await self.broker.ping(timeout=3) else "failed: no answer"
            except Exception as e:
                checks["kafka"] = f"failed: {type(e).__name__}"
            if self.health.paused:
                checks["consumers"] = "paused on " + ", ".join(sorted(self.health.paused))
            if all(v == "ok" for v in checks.values()):
                return {"status": "ready", "service": self.name, "checks": checks}
            return problems.problem_response(503, "Not ready", "A dependency does not answer.", checks=checks)

        @self.app.get("/metrics", tags=["health"], summary="Metrics in the Prometheus text format",
                      response_class=Response, responses={200: {"content": {"text/plain": {}}}},
                      description="For the scraper on the internal network, like /healthz: no token. The gateway "
                                  "does not route it (`/api/<service>/metrics` answers 404 there).")
        async def metrics():
            body, content_type = self.metrics.text()
            return Response(body, media_type=content_type)
