"""Wiring of the ratings service.

    uvicorn --factory ratings_service.app:create_app
"""
import asyncio

from fastapi import FastAPI

from ratings_service import store
from ratings_service.consumers import given_handlers, handlers
from ratings_service.http import router
from ratings_service.settings import RatingsSettings
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ratings service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(RatingsSettings, "ratings", settings)
    svc = Service("ratings", title="Ratings", outbox=["owed", "radars", "classifications"], produces=["ratings.events"],
                  settings=settings)
    svc.consume("dispatch.events", handlers(svc))
    single, batch = given_handlers(svc)
    svc.consume("ratings.events", single, batch=batch)  # its own RatingGiven → the radar (R-RAT-02), in batches
    svc.app.include_router(router)

    @svc.background("ratings-sweeper")
    async def _sweeper() -> None:
        """R-RAT-02: buckets leaving the window update the radar even if nobody reads it; also finishes
        radar updates a crash interrupted."""
        while True:
            try:
                await store.sweep(svc)
            except asyncio.CancelledError:
                raise
            except Exception:
                svc.log.exception("ratings sweep failed; retrying")
            await asyncio.sleep(settings.ratings_sweep_seconds)

    @svc.on_startup
    async def _start() -> None:
        await store.ensure_indexes(svc.db)

    return svc.app
