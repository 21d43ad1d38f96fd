"""MongoDB access of the notifications service: inbox, rating prompts, contacts, e-mail deliveries."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pymongo.errors import DuplicateKeyError

from notifications_service import domain

JST = ZoneInfo("Asia/Tokyo")


def now() -> datetime:
    return datetime.now(UTC)


def today_jst():
    return now().astimezone(JST).date()


async def ensure_indexes(db) -> None:
    await db.inbox.create_index([("recipient_id", 1), ("at", -1)])
    await db.prompts.create_index([("recipient_id", 1), ("status", 1)])
    await db.deliveries.create_index([("status", 1), ("next_at", 1)])
    await db.deliveries.create_index([("recipient_id", 1), ("created_at", -1)])
    await db.deliveries.create_index("owed_id")


async def audit(db, action: str, key: str, payload: dict, actor: str | None = None) -> None:
    """State changes here publish no event, so each gets its own audit record."""
    await db.audit.insert_one({"at": now(), "actor": actor, "action": action, "key": key, "payload": payload})


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
        await db.inbox.insert_one({"_id": item_id, "recipient_id": recipient_id, "template": template,
                                   "subject": subject, "body": body, "language": used, "params": params,
                                   "at": now(), "read": False})
        added = True
        await audit(db, "notifications.InboxItemAdded", recipient_id, {"item_id": item_id, "template": template})
    except DuplicateKeyError:
        added = False  # redelivery; the e-mail below is deduplicated by its own key, so a crash in between is healed
    await queue_email(svc, key=email_key or f"inbox:{item_id}", recipient_id=recipient_id, template=template,
                      params=params, owed_id=owed_id, contact=contact)
    return added


async def queue_email(svc, *, key: str, recipient_id: str, template: str, params: dict[str, str],
                      owed_id: str | None = None, contact: dict | None = None) -> bool:
    """Queues one e-mail under the dedupe `key` (a second one with the same key is dropped)."""
    contact = contact if contact is not None else await contact_of(svc.db, recipient_id)
    to = params.get("email") or contact.get("email")
    if not to or contact.get("email_enabled") is False:
        return False  # no address (yet) or the user opted out: the inbox still has it
    subject, body, used = domain.render(template, params, contact.get("language"))
    at = now()
    try:
        await svc.db.deliveries.insert_one({
            "_id": key, "recipient_id": recipient_id, "to": to, "subject": subject, "body": body, "language": used,
            "template": template, "owed_id": owed_id, "status": "queued", "attempts": 0, "next_at": at,
            "created_at": at, "history": []})
    except DuplicateKeyError:
        return False
    svc.app.state.mailer.kick()
    return True
