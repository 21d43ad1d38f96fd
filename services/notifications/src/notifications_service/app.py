"""Wiring of the notifications service."""
from notifications_service import people, store
from notifications_service.consumers import command_handlers, dispatch_handlers, ratings_handlers
from notifications_service.http import router
from notifications_service.mailer import Mailer
from servicekit.service import Service

svc = Service("notifications", title="Notifications")
svc.consume("ratings.events", ratings_handlers(svc))
svc.consume("dispatch.events", dispatch_handlers(svc))
svc.consume("notifications.commands", command_handlers(svc))
svc.consume("identity.events", people.identity_handlers(svc))
svc.consume("experts.events", people.experts_handlers(svc))
svc.app.include_router(router)
svc.app.state.mailer = Mailer(svc.db)
svc.background("mailer")(svc.app.state.mailer.run)


@svc.on_startup
async def _start() -> None:
    await store.ensure_indexes(svc.db)
    await people.ensure_indexes(svc.db)


app = svc.app
