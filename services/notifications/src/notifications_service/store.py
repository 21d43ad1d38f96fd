"""MongoDB access of the notifications service: inbox, rating prompts, contacts and preferences, deliveries on
each channel, daily digests."""
from __future__ import annotations

from dataclasses import dataclass

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from notifications_service import domain
from notifications_service.domain import JST  # noqa: F401  (used by alerts)
from servicekit import paging
from servicekit.store import audit_record, now, record_audit  # noqa: F401  (now: the one clock)


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
    await db.deliveries.create_index([("created_at", -1)])  # the operators' view of every delivery, newest first
    await db.inbox.create_index([("party", 1), ("event_at", 1)], sparse=True)  # a party's notices, for a late joiner


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
                 email_key: str | None = None, owed_id: str | None = None, told: dict | None = None) -> bool:
    """Puts one message in the recipient's inbox and queues its e-mail; idempotent by `item_id`. `told`: the party
    the notice was for, its event's id and time (`party`, `event_id`, `event_at`), kept on the item so that a person
    learnt to act for the party later gets what the party was told since they joined (consumers.deliver_missed)."""
    db = svc.db
    contact = await contact_of(db, recipient_id)
    lang = contact.get("language")
    subject, body, used = domain.render(template, params, lang)
    try:
        at = now()
        await db.inbox.insert_one({"_id": item_id, "recipient_id": recipient_id, "template": template,
                                   "subject": subject, "body": body, "language": used, "params": params,
                                   "at": at, "key": paging.sort_key(at, item_id), "read": False, **(told or {})})
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
    hours), or adds it to their daily digest (what: `domain.outgoing`); one delivery per channel (and push
    subscription) under the dedupe `key`, so a second call with the same key queues nothing. Returns how many
    deliveries (or digest entries) it queued."""
    db = svc.db
    contact = contact if contact is not None else await contact_of(db, recipient_id)
    subs = ([s async for s in db.push_subscriptions.find({"account_id": recipient_id})]
            if domain.wants_subscriptions(contact, params) else [])
    out = domain.outgoing(key=key, recipient_id=recipient_id, template=template, params=params, contact=contact,
                          subscriptions=subs, at=now(), portal_url=_portal(svc),
                          unsubscribe_secret=svc.app.state.unsubscribe_secret, owed_id=owed_id)
    queued = 0
    for doc in out.deliveries:
        try:
            await db.deliveries.insert_one(doc)
            queued += 1
        except DuplicateKeyError:
            pass
    if out.digest is not None:
        queued += await add_to_digest(db, out.digest)
    if queued:
        svc.app.state.deliverer.kick()
    return queued


def _digest_write(e: domain.DigestEntry) -> tuple[dict, dict]:
    """Filter and update that add the entry to its digest once per key (the filter guards a redelivery: the
    upsert of a digest that already has the key collides with it)."""
    return ({"_id": e.digest_id, "keys": {"$ne": e.key}}, {
        "$push": {"items": {"subject": e.subject, "body": e.body}, "keys": e.key},
        "$setOnInsert": {"recipient_id": e.recipient_id, "due_at": e.due_at, "status": "open"}})


async def add_to_digest(db, entry: domain.DigestEntry) -> int:
    """Adds the message to the person's next daily digest, once per key."""
    try:
        await db.digests.update_one(*_digest_write(entry), upsert=True)
    except DuplicateKeyError:
        return 0  # already in it
    return 1


async def add_to_digests(db, entries: list[domain.DigestEntry]) -> None:
    """`add_to_digest` for many entries: the digests read by `_id: {$in}`; digests that do not exist yet are
    inserted whole with one unordered insert, entries of existing ones `$push`ed with one bulk write (no upserts:
    an upsert that collides inside a bulk write breaks it on FerretDB, whose reply then lacks `nModified` and skips
    the statements after it). A digest another replica made meanwhile gets its entries one by one (idempotent)."""
    entries = list({(e.digest_id, e.key): e for e in entries}.values())  # the same message twice in a batch
    have = {d["_id"]: set(d.get("keys") or ()) async for d in
            db.digests.find({"_id": {"$in": sorted({e.digest_id for e in entries})}}, {"keys": 1})}
    new: dict[str, dict] = {}
    updates = []
    for e in entries:
        if e.key in have.get(e.digest_id, ()):
            continue  # already in it (a redelivery)
        if e.digest_id in have:
            filter_, update = _digest_write(e)
            updates.append(UpdateOne(filter_, {"$push": update["$push"]}))
        else:
            doc = new.setdefault(e.digest_id, {"_id": e.digest_id, "recipient_id": e.recipient_id, "due_at": e.due_at,
                                               "status": "open", "items": [], "keys": []})
            doc["items"].append({"subject": e.subject, "body": e.body})
            doc["keys"].append(e.key)
    if new:
        docs = list(new.values())
        try:
            await db.digests.insert_many(docs, ordered=False)
        except BulkWriteError as err:
            made = {docs[i]["_id"] for i in _ignore_duplicates(err)}
            for e in entries:
                if e.digest_id in made:
                    await add_to_digest(db, e)
    if updates:
        await db.digests.bulk_write(updates, ordered=False)


# --- many messages at once (a batch of Notify commands): one read and one write per collection ----------------
@dataclass
class Notice:
    """One inbox item to add (and send out) in a batch; `follow`: the programme its recipient now follows."""

    item_id: str
    recipient_id: str
    template: str
    params: dict[str, str]
    follow: str | None = None
    told: dict | None = None  # the party and event the item is kept under (see `notify`)


async def contacts_of(db, ids: list[str]) -> dict[str, dict]:
    """`contact_of` for many people: two `_id: {$in}` reads."""
    contacts = {d["_id"]: d async for d in db.contacts.find({"_id": {"$in": ids}})}
    lacking = [i for i in ids if not contacts.get(i, {}).get("email")]
    emails = {d["_id"]: d["email"] async for d in db.accounts.find({"_id": {"$in": lacking}}, {"email": 1})
              if d.get("email")} if lacking else {}
    return {i: {**contacts.get(i, {}), **({"email": emails[i]} if i in emails else {})} for i in ids}


def _ignore_duplicates(e: BulkWriteError) -> set[int]:
    """The indexes of the statements that failed only as duplicates (a redelivery); anything else is raised."""
    errors = e.details.get("writeErrors") or []
    if any(w.get("code") != 11000 for w in errors) or e.details.get("writeConcernErrors"):
        raise e
    return {w["index"] for w in errors}


async def notify_many(svc, notices: list[Notice], audits: list[dict] = ()) -> int:
    """Puts many messages in their recipients' inboxes and sends them out, as `notify` does one by one and with the
    same rules (`domain.outgoing`), in a few bulk operations: contacts and addresses by `$in`, the inbox items in
    one unordered insert (a duplicate is a redelivery: not audited again, its deliveries deduplicated by their own
    keys), the audit entries (plus `audits`) in one insert, the deliveries in one insert, digest entries and
    follows each in one insert (or bulk write). Idempotent: the same notices again add nothing. Returns the inbox items added."""
    db = svc.db
    if not notices:
        if audits:
            await db.audit.insert_many(list(audits), ordered=False)
        return 0
    at = now()
    ids = sorted({n.recipient_id for n in notices})
    contacts = await contacts_of(db, ids)
    push = sorted({n.recipient_id for n in notices if domain.wants_subscriptions(contacts[n.recipient_id], n.params)})
    subs: dict[str, list[dict]] = {}
    if push:
        async for s in db.push_subscriptions.find({"account_id": {"$in": push}}):
            subs.setdefault(s["account_id"], []).append(s)
    items = []
    for n in notices:
        subject, body, used = domain.render(n.template, n.params, contacts[n.recipient_id].get("language"))
        items.append({"_id": n.item_id, "recipient_id": n.recipient_id, "template": n.template, "subject": subject,
                      "body": body, "language": used, "params": n.params, "at": at,
                      "key": paging.sort_key(at, n.item_id), "read": False, **(n.told or {})})
    try:
        await db.inbox.insert_many(items, ordered=False)
        duplicate: set[int] = set()
    except BulkWriteError as e:
        duplicate = _ignore_duplicates(e)
    audits = [*audits, *(audit_record(actor=None, action="notifications.InboxItemAdded", key=n.recipient_id,
                                      payload={"item_id": n.item_id, "template": n.template})
                         for i, n in enumerate(notices) if i not in duplicate)]
    if audits:
        await db.audit.insert_many(audits, ordered=False)
    deliveries, digests = [], []
    portal, secret = _portal(svc), svc.app.state.unsubscribe_secret
    for n in notices:
        out = domain.outgoing(key=f"inbox:{n.item_id}", recipient_id=n.recipient_id, template=n.template,
                              params=n.params, contact=contacts[n.recipient_id],
                              subscriptions=subs.get(n.recipient_id, []), at=at, portal_url=portal,
                              unsubscribe_secret=secret)
        deliveries += out.deliveries
        if out.digest is not None:
            digests.append(out.digest)
    queued = len(deliveries)
    if deliveries:
        try:
            await db.deliveries.insert_many(deliveries, ordered=False)
        except BulkWriteError as e:
            queued -= len(_ignore_duplicates(e))
    if digests:
        await add_to_digests(db, digests)
    follows = {f"{n.follow}:{n.recipient_id}": (n.follow, n.recipient_id) for n in notices if n.follow}
    if follows:  # the document `alerts.follow` upserts; one already there is the same (a redelivery)
        try:
            await db.follows.insert_many([{"_id": k, "programme_id": p, "account_id": a}
                                          for k, (p, a) in follows.items()], ordered=False)
        except BulkWriteError as e:
            _ignore_duplicates(e)
    if queued:
        svc.app.state.deliverer.kick()
    return len(notices) - len(duplicate)


def _portal(svc) -> str:
    from notifications_service.consumers import portal_url

    return portal_url(svc)


def unsubscribe_url(svc, account_id: str, category: str) -> str:
    return domain.unsubscribe_url(_portal(svc), svc.app.state.unsubscribe_secret, account_id, category)


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
