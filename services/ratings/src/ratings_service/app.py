"""Wiring of the ratings service."""
import asyncio
import os

from ratings_service import store
from ratings_service.consumers import handlers
from ratings_service.http import router
from servicekit.service import Service

svc = Service("ratings", title="Ratings", outbox=["owed", "radars", "classifications"], produces=["ratings.events"])
svc.consume("dispatch.events", handlers(svc))
svc.app.include_router(router)
SWEEP_SECONDS = float(os.environ.get("RATINGS_SWEEP_SECONDS", "60"))


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
        await asyncio.sleep(SWEEP_SECONDS)


@svc.on_startup
async def _start() -> None:
    await store.ensure_indexes(svc.db)


app = svc.app
