"""Wiring of the experts service: store, per-replica search index, HTTP routes and Kafka handlers.

    uvicorn --factory experts_service.app:create_app
"""
from fastapi import FastAPI

from experts_service.consumers import (add_revocation_handler, dispatch_handlers, identity_handlers,
                                       own_event_handlers, ratings_handlers)
from experts_service.http import router
from experts_service.settings import ExpertsSettings
from experts_service.store import IndexFeed, Store
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """The experts service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(ExpertsSettings, "experts", settings)
    svc = Service("experts", title="Experts", outbox=["experts"], produces=["experts.events"], settings=settings)
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
    return svc.app
