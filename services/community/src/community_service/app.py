"""Wiring of the community service: community threads with moderation (R-POR-02), matching (R-POR-03) and regional
joint ordering (R-POR-04).

    uvicorn --factory community_service.app:create_app
"""
from fastapi import FastAPI

from community_service.consumers import identity_handlers
from community_service.joint import router as joint_router
from community_service.matching import router as matching_router
from community_service.threads import router as threads_router
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered, PlatformAreaChanged, PlatformRegistered
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """The community service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(Settings, "community", settings)
    svc = Service("community", title="Community and matching",
                  outbox=["threads", "posts", "reports", "postings", "matches", "orders", "applications"],
                  produces=["community.events", "notifications.commands"], settings=settings)
    svc.app.include_router(threads_router)
    svc.app.include_router(matching_router)
    svc.app.include_router(joint_router)
    # where businesses are and which prefectures each platform supports, for joint orders (R-POR-04)
    svc.consume("identity.events", identity_handlers(svc))
    svc.read_model("places", "identity.events", [BusinessRegistered, BusinessProfileChanged, PlatformRegistered,
                                                 PlatformAreaChanged], ["places", "platform_areas"])
    return svc.app
