"""Wiring of the budget service: frames store, budget command and membership consumers, HTTP routes.

    uvicorn --factory budget_service.app:create_app
"""
from fastapi import FastAPI

from budget_service.consumers import handlers
from budget_service.http import router
from budget_service.ebpm_reports import router as ebpm_router
from budget_service.store import FrameStore
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """The budget service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(Settings, "budget", settings)
    svc = Service("budget", title="Budget frames", outbox=["frames", "orphan_answers"], produces=["budget.events"],
                  settings=settings)
    store = FrameStore(svc)
    commands, batched, memberships = handlers(svc, store)
    svc.consume("budget.commands", commands, batch=batched)
    svc.consume("identity.events", memberships)
    svc.read_model("memberships", "identity.events", list(memberships), ["platforms", "members"])  # R-PF-04
    svc.on_startup(store.indexes)
    svc.app.state.frame_store = store
    svc.app.include_router(router)
    svc.app.include_router(ebpm_router)  # R-REC-07
    return svc.app
