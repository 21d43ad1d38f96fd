"""Wiring of the recommend service.

    uvicorn --factory recommend_service.app:create_app
"""
from datetime import UTC, datetime

from fastapi import FastAPI

from recommend_service import blobs, domain, store
from recommend_service.consumers import community_handlers, identity_batch_handlers, identity_handlers, own_handlers
from recommend_service.http import router
from recommend_service.intake_http import router as intake_router
from recommend_service.settings import RecommendSettings
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


class _Arrival:
    """R-POR-05: the time a request arrived at the API, stamped before anything else runs (a plain ASGI middleware,
    outermost): a submission is judged in time by it, however long processing takes afterwards."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope.setdefault("state", {})["arrived_at"] = datetime.now(UTC)
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The recommend service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(RecommendSettings, "recommend", settings)
    svc = Service("recommend", title="Recommendations", outbox=["business_profiles", "programmes", "applications"],
                  produces=["recommend.events", "notifications.commands"], settings=settings,
                  batched=("identity.events",),  # profiles learnt in batches (the deny list shares the consumer)
                  batch_max={"identity.events": settings.learn_batch_max})
    svc.consume("identity.events", identity_handlers(svc), batch=identity_batch_handlers(svc))
    svc.consume("recommend.events", own_handlers(svc))
    svc.consume("community.events", community_handlers(svc))  # needs and offers, recommended like programmes
    svc.app.include_router(router)
    svc.app.include_router(intake_router)
    svc.app.state.cases = domain.load_cases()  # R-POR-08: the case catalogue ships with the service
    # R-POR-05: application attachments (local disk by default)
    svc.app.state.blobs = blobs.from_settings(settings)
    svc.app.add_middleware(_Arrival)

    @svc.on_startup
    async def _seed() -> None:
        await store.seed_catalogue(svc.db, domain.load_catalogue())

    return svc.app
