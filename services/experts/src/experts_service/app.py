"""Wiring of the experts service: store, per-replica search index, HTTP routes and Kafka handlers."""
from experts_service.consumers import (add_revocation_handler, dispatch_handlers, identity_handlers,
                                       own_event_handlers, ratings_handlers)
from experts_service.http import router
from experts_service.store import IndexFeed, Store
from servicekit.service import Service

svc = Service("experts", title="Experts", outbox=["experts"], produces=["experts.events"])
store = Store(svc)
feed = IndexFeed(svc, store)
svc.app.state.store = store
add_revocation_handler(svc, store, svc.consume("identity.events", identity_handlers(svc, store)))
svc.consume("ratings.events", ratings_handlers(svc, store))
svc.consume("dispatch.events", dispatch_handlers(svc, store))
svc.consume("experts.events", own_event_handlers())
svc.app.include_router(router)


@svc.on_startup
async def _start() -> None:
    await store.ensure_indexes()
    await feed.open()  # the index is complete before the first request


svc.background("experts-index-feed")(feed.run)
app = svc.app
