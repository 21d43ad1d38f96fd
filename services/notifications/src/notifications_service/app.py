"""Wiring of the notifications service."""
import os
import secrets

from pymongo.errors import DuplicateKeyError

from notifications_service import alerts, channels, people, store
from notifications_service.consumers import command_handlers, dispatch_handlers, ratings_handlers
from notifications_service.delivery import Deliverer
from notifications_service.http import router
from notifications_service.preferences import router as preferences_router
from servicekit.service import Service

svc = Service("notifications", title="Notifications")
svc.consume("ratings.events", ratings_handlers(svc))
svc.consume("dispatch.events", dispatch_handlers(svc))
svc.consume("notifications.commands", command_handlers(svc))
svc.consume("identity.events", people.identity_handlers(svc))
svc.consume("experts.events", people.experts_handlers(svc))
svc.consume("experts.events", alerts.experts_handlers(svc))
svc.consume("recommend.events", alerts.recommend_handlers(svc))
svc.app.include_router(router)
svc.app.include_router(preferences_router)
svc.app.include_router(alerts.router)
svc.background("reminders")(lambda: alerts.run_clock(svc))


async def _shared_secret(name: str, make) -> bytes:
    """A key every replica must share (VAPID, the unsubscribe HMAC): from the environment, else made once and kept in
    the service's own database (the first replica's insert wins)."""
    path = os.environ.get(f"NOTIFY_{name.upper()}_FILE")
    if path:
        with open(path, "rb") as f:
            return f.read()
    try:
        await svc.db.keys.insert_one({"_id": name, "value": make()})
    except DuplicateKeyError:
        pass
    return (await svc.db.keys.find_one({"_id": name}))["value"]


@svc.on_startup
async def _start() -> None:
    await store.ensure_indexes(svc.db)
    await people.ensure_indexes(svc.db)
    await alerts.ensure_indexes(svc.db)
    vapid = channels.vapid_from_pem(await _shared_secret("vapid", channels.new_vapid_pem))
    svc.app.state.vapid_public_key = channels.vapid_public_key(vapid)
    svc.app.state.unsubscribe_secret = await _shared_secret("unsubscribe", lambda: secrets.token_bytes(32))
    subject = os.environ.get("VAPID_SUBJECT", "mailto:" + os.environ.get("SMTP_FROM", "no-reply@smeportal.example.jp"))
    svc.app.state.deliverer = Deliverer(svc.db, {"email": channels.EmailSender(),
                                                 "webpush": channels.WebPushSender(vapid, subject),
                                                 "line": channels.LineSender()})
    svc.background("deliverer")(svc.app.state.deliverer.run)


app = svc.app
