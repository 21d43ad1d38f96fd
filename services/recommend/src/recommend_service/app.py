"""Wiring of the recommend service."""
from recommend_service.consumers import handlers
from recommend_service.http import router
from servicekit.service import Service

svc = Service("recommend", title="Recommendations", produces=["recommend.events"])
svc.consume("identity.events", handlers(svc))
svc.app.include_router(router)
app = svc.app
