"""Wiring of the identity service."""
from identity_service.http import router
from servicekit.service import Service

svc = Service("identity", title="Identity", outbox=["businesses"], produces=["identity.events"])
svc.app.include_router(router)
app = svc.app
