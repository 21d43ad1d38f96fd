"""MongoDB access of the notifications service: inbox, rating prompts, contacts and preferences, deliveries on
each channel, daily digests."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pymongo.errors import DuplicateKeyError

from notifications_service import channels, domain
from servicekit import paging
from servicekit.store import now, record_audit  # noqa: F401  (now: the one clock)

JST = ZoneInfo("Asia/Tokyo")


def today_jst():
    return now().astimezone(JST).date()


async def ensure_indexes(db) -> None:
    await db.inbox.create_index([("recipient_id", 1), ("key", -1)])
    await db.prompts.create_index([("recipient_id", 1), ("status", 1)])
    await db.deliveries.create_index([("channel", 1), ("status", 1), ("next_at", 1)])
    await db.deliveries.create_index("message_id")
    await db.digests.create_index([("status", 1), ("due_at", 1)])
    await db.push_subscriptions.create_index("account_id")
    await db.contacts.create_index("email")
    await db.contacts.create_index("line_user_id")
    await db.deliveries.create_index([("recipient_id", 1), ("created_at", -1)])
    await db.deliveries.create_index("owed_id")


async def audit(db, action: str, key: str, payload: dict, actor: str | None = None) -> None:
    """State changes here publish no event, so each gets its own audit record."""
    await record_audit(db, actor=actor, action=action, key=key, payload=payload)


async def contact_of(db, recipient_id: str) -> dict:
    """The person's own preferences; the address identity knows is the default until they set one (R-NOT-03)."""
    contact = await db.contacts.find_one({"_id": recipient_id}) or {}
    if not contact.get("email"):
        account = await db.accounts.find_one({"_id": recipient_id}, {"email": 1}) or {}
        if account.get("email"):
            contact = {**contact, "email": account["email"]}
    return contact


async def notify(svc, *, item_id: str, recipient_id: str, template: str, params: dict[str, str],
                 email_key: str | None = None, owed_id: str | None = None) -> bool:
    """Puts one message in the recipient's inbox and queues its e-mail; idempotent by `item_id`."""
    db = svc.db
    contact = await contact_of(db, recipient_id)
    lang = contact.get("language")
    subject, body, used = domain.render(template, params, lang)
    try:
        at = now()
        await db.inbox.insert_one({"_id": item_id, "recipient_id": recipient_id, "template": template,
                                   "subject": subject, "body": body, "language": used, "params": params,
                                   "at": at, "key": paging.sort_key(at, item_id), "read": False})
        added = True
        await audit(db, "notifications.InboxItemAdded", recipient_id, {"item_id": item_id, "template": template})
    except DuplicateKeyError:
        added = False  # redelivery; the e-mail below is deduplicated by its own key, so a crash in between is healed
    await send_out(svc, key=email_key or f"inbox:{item_id}", recipient_id=recipient_id, template=template,
                   params=params, owed_id=owed_id, contact=contact)
    return added


async def send_out(svc, *, key: str, recipient_id: str, template: str, params: dict[str, str],
                   owed_id: str | None = None, contact: dict | None = None) -> int:
    """R-NOT-04: queues the message on each channel the person's preferences allow, when they allow it (quiet
    hours), or adds it to their daily digest; one delivery per channel (and push subscription) under the dedupe
    `key`, so a second call with the same key queues nothing. Returns how many deliveries it queued."""
    db = svc.db
    contact = contact if contact is not None else await contact_of(db, recipient_id)
    prefs = domain.Preferences.of(contact)
    if params.get("email"):  # a sender that names the address (e.g. a test or an import) asks for e-mail
        contact, prefs = {**contact, "email": params["email"]}, domain.Preferences.of({**contact, "channels": ["email"]})
    subs = [s async for s in db.push_subscriptions.find({"account_id": recipient_id})] if "webpush" in prefs.channels else []
    reachable = frozenset(c for c, ok in (("email", contact.get("email")), ("webpush", subs),
                                          ("line", contact.get("line_user_id"))) if ok)
    category = domain.category_of(template)
    local = now().astimezone(JST)
    subject, body, used = domain.render(template, params, contact.get("language"))
    base = {"recipient_id": recipient_id, "subject": subject, "body": body, "language": used, "template": template,
            "category": category, "owed_id": owed_id, "status": "queued", "attempts": 0, "created_at": now(),
            "history": []}
    payload = domain.push_payload(subject, body, params.get("link") or params.get("url"))
    queued = 0
    for step in domain.plan(prefs, category, local, reachable):
        if step.at is None:
            queued += await add_to_digest(db, recipient_id, key, prefs, local, subject, body)
            continue
        docs = []
        if step.channel == "email":
            docs = [{"_id": key, "to": contact["email"], "message_id": channels.message_id(key),
                     "unsubscribe": unsubscribe_url(svc, recipient_id, category)}]
        elif step.channel == "webpush":
            docs = [{"_id": f"{key}:webpush:{s['_id']}", "to": s["endpoint"][:200], "subscription_id": s["_id"],
                     "subscription": {"endpoint": s["endpoint"], "keys": s["keys"]}, "payload": payload} for s in subs]
        elif step.channel == "line":
            docs = [{"_id": f"{key}:line", "to": contact["line_user_id"], "payload": payload}]
        for doc in docs:
            try:
                await db.deliveries.insert_one({**base, **doc, "channel": step.channel,
                                                "next_at": step.at.astimezone(UTC)})
                queued += 1
            except DuplicateKeyError:
                pass
    if queued:
        svc.app.state.deliverer.kick()
    return queued


async def add_to_digest(db, recipient_id: str, key: str, prefs, local, subject: str, body: str) -> int:
    """Adds the message to the person's next daily digest, once per key (the filter guards a redelivery)."""
    due = domain.next_digest_at(prefs, local)
    digest_id = f"{recipient_id}:{due.date().isoformat()}"
    try:
        await db.digests.update_one({"_id": digest_id, "keys": {"$ne": key}}, {
            "$push": {"items": {"subject": subject, "body": body}, "keys": key},
            "$setOnInsert": {"recipient_id": recipient_id, "due_at": due.astimezone(UTC), "status": "open"}},
            upsert=True)
    except DuplicateKeyError:
        return 0  # already in it
    return 1


def unsubscribe_url(svc, account_id: str, category: str) -> str:
    from notifications_service.consumers import portal_url

    token = domain.unsubscribe_token(svc.app.state.unsubscribe_secret, account_id, category)
    return f"{portal_url(svc)}/api/notifications/unsubscribe/{token}"


async def pause_channel(db, delivery: dict, reason: str) -> None:
    """R-NOT-04: a hard bounce or an unreachable messaging account pauses that channel for the person until they
    resume it; a push subscription the push service calls gone is dropped (the browser subscribes anew)."""
    channel, account = delivery["channel"], delivery["recipient_id"]
    if channel == "webpush":
        await db.push_subscriptions.delete_one({"_id": delivery.get("subscription_id")})
    else:
        await db.contacts.update_one({"_id": account}, {"$set": {f"paused.{channel}": {
            "reason": reason[:300], "at": now(), "to": delivery.get("to")}}}, upsert=True)
    await audit(db, "notifications.ChannelPaused", account, {"channel": channel, "reason": reason[:300]})
