"""Wiring of the notifications service.

    uvicorn --factory notifications_service.app:create_app
"""
import secrets

from fastapi import FastAPI
from pymongo.errors import DuplicateKeyError

from notifications_service import alerts, channels, people, store
from notifications_service.consumers import command_handlers, deliver_missed, dispatch_handlers, ratings_handlers
from notifications_service.delivery import Deliverer
from notifications_service.http import router
from notifications_service.preferences import router as preferences_router
from notifications_service.settings import NotificationsSettings
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


async def _shared_secret(svc: Service, name: str, make) -> bytes:
    """A key every replica must share (VAPID, the unsubscribe HMAC): from the file the settings name
    (NOTIFY_<NAME>_FILE), else made once and kept in the service's own database (the first replica's insert wins)."""
    path = getattr(svc.settings, f"notify_{name}_file")
    if path:
        with open(path, "rb") as f:
            return f.read()
    try:
        await svc.db.keys.insert_one({"_id": name, "value": make()})
    except DuplicateKeyError:
        pass
    return (await svc.db.keys.find_one({"_id": name}))["value"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The notifications service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(NotificationsSettings, "notifications", settings)
    svc = Service("notifications", title="Notifications", settings=settings)
    svc.consume("ratings.events", ratings_handlers(svc))
    svc.consume("dispatch.events", dispatch_handlers(svc))
    single, batch, deliver_parked = command_handlers(svc)
    svc.consume("notifications.commands", single, batch=batch)

    async def joined(key: str, account_id: str, since) -> None:
        await deliver_parked(key)
        await deliver_missed(svc, key, account_id, since)

    svc.consume("identity.events", people.identity_handlers(svc, joined=joined))
    svc.consume("experts.events", people.experts_handlers(svc, joined=joined))
    svc.consume("experts.events", alerts.experts_handlers(svc))
    svc.consume("recommend.events", alerts.recommend_handlers(svc))
    svc.app.include_router(router)
    svc.app.include_router(preferences_router)
    svc.app.include_router(alerts.router)
    svc.background("reminders")(lambda: alerts.run_clock(svc))

    @svc.on_startup
    async def _start() -> None:
        await store.ensure_indexes(svc.db)
        await people.ensure_indexes(svc.db)
        await alerts.ensure_indexes(svc.db)
        vapid = channels.vapid_from_pem(await _shared_secret(svc, "vapid", channels.new_vapid_pem))
        svc.app.state.vapid_public_key = channels.vapid_public_key(vapid)
        svc.app.state.unsubscribe_secret = await _shared_secret(svc, "unsubscribe", lambda: secrets.token_bytes(32))
        subject = settings.vapid_subject or "mailto:" + settings.smtp_from
        svc.app.state.deliverer = Deliverer(svc.db, {"email": channels.EmailSender(settings),
                                                     "webpush": channels.WebPushSender(vapid, subject),
                                                     "line": channels.LineSender(settings)}, settings)
        svc.background("deliverer")(svc.app.state.deliverer.run)

    return svc.app
