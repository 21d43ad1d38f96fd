"""Kafka handlers of the notifications service: rating prompts (R-RAT-03, R-NOT-02), dispatch status
notices to each party (R-NOT-02) and the Notify command; idempotent by event / notification id."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.notifications import Notify
from contracts.events.ratings import RatingGiven, RatingOwed
from notifications_service import alerts, domain, people
from notifications_service.store import Notice, audit, notify, notify_many, now, today_jst
from servicekit.bus import processing
from servicekit.store import audit_record

PARKED_KEEP = 100  # notices kept per party that nobody acts for yet (the latest)
JOIN_GRACE = timedelta(seconds=30)  # how far the clocks of identity's and dispatch's hosts may disagree
MISSED_MAX = 1_000  # inbox items read for a person who joins a party (its other people's, since the join)


def ratings_handlers(svc):
    async def on_owed(env: Envelope, e: RatingOwed) -> None:
        # $setOnInsert: a RatingGiven that somehow came first is not reopened.
        res = await svc.db.prompts.update_one({"_id": e.owed_id}, {"$setOnInsert": {
            "recipient_id": e.rater_account_id, "dispatch_id": e.dispatch_id, "expert_id": e.expert_id,
            "rater_kind": e.rater_kind, "status": "open", "since": e.since}}, upsert=True)
        if res.upserted_id is None:
            return
        await audit(svc.db, "notifications.PromptOpened", e.rater_account_id, {"owed_id": e.owed_id})
        await notify(svc, item_id=f"owed:{e.owed_id}", recipient_id=e.rater_account_id, template="rating_owed",
                     params={"dispatch_id": e.dispatch_id, "expert_id": e.expert_id}, owed_id=e.owed_id,
                     email_key=domain.prompt_email_key(e.owed_id, today_jst()))

    async def on_given(env: Envelope, e: RatingGiven) -> None:
        res = await svc.db.prompts.update_one({"_id": e.owed_id}, {
            "$set": {"status": "closed", "closed_at": now()},
            "$setOnInsert": {"recipient_id": e.rater_account_id, "dispatch_id": e.dispatch_id}}, upsert=True)
        if res.modified_count or res.upserted_id:
            await audit(svc.db, "notifications.PromptClosed", e.rater_account_id, {"owed_id": e.owed_id})
        # Reminders not yet sent are no longer needed.
        await svc.db.deliveries.update_many({"owed_id": e.owed_id, "status": "queued"}, {"$set": {"status": "cancelled"}})

    return {RatingOwed: on_owed, RatingGiven: on_given}


def dispatch_handlers(svc):
    async def on_status(env: Envelope, e: DispatchStatusChanged) -> None:
        """R-NOT-03: every person of every party, each told what happened and what their party does next. A party
        with nobody known yet (its binding not learnt yet) gets its notice when its first person joins; a person
        learnt to join while this runs is found by the second look (or by `deliver_missed`, which sees the items
        written before it)."""
        audience = domain.status_audience(e)
        keys = [k for k, _ in audience]
        party_of = {role: k for k, role in audience}
        reached: set[str] = set()

        def kept_under(key: str) -> dict:  # what a later joiner of the party catches up by (`deliver_missed`)
            return {"party": key, "event_id": env.event_id, "event_at": env.occurred_at}

        async def tell(found: dict[str, str]) -> None:
            for account, role in found.items():
                if account not in reached:
                    reached.add(account)
                    await notify(svc, item_id=f"{env.event_id}:{account}", recipient_id=account,
                                 template="dispatch_status", params=domain.status_params(e, role, portal_url(svc)),
                                 told=kept_under(party_of[role]))

        docs = await people.party_docs(svc.db, keys)
        members, struck = await people.members(svc.db, keys, docs)
        waiting = [(k, role) for k, role in audience if not domain.people_of([(k, role)], members, struck)]
        if waiting:
            await audit(svc.db, "notifications.NobodyToTell", e.dispatch_id, {"status": e.status,
                                                                              "parties": [k for k, _ in waiting]})
        for key, role in waiting:
            kind, party_id = key.split(":", 1)
            await park(svc, Notify(notification_id=env.event_id, recipient_kind=kind, recipient_id=party_id,
                                   template="dispatch_status", params=domain.status_params(e, role, portal_url(svc))),
                       item_prefix=f"{env.event_id}:", told=kept_under(key))
        if len(docs) < len(keys) or any(not d.get("told") for d in docs.values()):  # before the items: a join that
            await people.mark_told(svc.db, keys)                                     # sees no mark is seen below
        await tell(domain.people_of(audience, members, struck))
        # Identity's events come on their own topic: a person whose joining is learnt between the first look and
        # the items above is in the second look; one learnt after it finds the items (deliver_missed).
        again = await people.party_docs(svc.db, keys)
        if any(set(d.get("account_ids") or ()) - set(members.get(k, ())) for k, d in again.items()):
            await tell(domain.people_of(audience, *await people.members(svc.db, keys, again)))

    return {DispatchStatusChanged: on_status}


async def deliver_missed(svc, key: str, account: str, since: datetime | None) -> int:
    """R-NOT-03: a person learnt to act for party `key` (a binding, a staff link) gets the dispatch notices the party's
    other people were told about events since they joined (`since`, less JOIN_GRACE for the hosts' clocks): a member
    invited a moment before a request is a person of the business, even when this service learns it after the
    request's first status. Idempotent: the items take the ids the live path gives them."""
    party = await svc.db.parties.find_one({"_id": key}) or {}
    if since is None or not party.get("told") or account not in party.get("account_ids", ()):
        return 0  # a party never told of anything (most joins: a business just registered) has nothing to catch up on
    if await svc.db.accounts.find_one({"_id": account, "revoked": True}, {"_id": 1}):
        return 0
    added, seen = 0, set()
    async for item in svc.db.inbox.find({"party": key, "event_at": {"$gte": since - JOIN_GRACE}}).limit(MISSED_MAX):
        if item["recipient_id"] == account or item["event_id"] in seen:
            continue
        seen.add(item["event_id"])
        added += await notify(svc, item_id=f"{item['event_id']}:{account}", recipient_id=account,
                              template=item["template"], params=item["params"],
                              told={"party": key, "event_id": item["event_id"], "event_at": item["event_at"]})
    return added


async def park(svc, c: Notify, item_prefix: str | None = None, told: dict | None = None) -> None:
    """A notice for a party with nobody known yet waits under the party: identity's events (who its people are)
    and the notices come on different topics, so a business registered a moment ago may be told of something
    before this service has learnt its binding. The party's first person to join gets it (`deliver_parked`);
    `item_prefix` + account is its inbox item's id when the live path names items so (a redelivery adds none);
    `told`: the party and event the items are kept under (see `notify`), so a later joiner catches up on them too."""
    entry = {**c.model_dump(mode="json"), **({"item_prefix": item_prefix} if item_prefix else {}),
             **({"told": told} if told else {})}
    await svc.db.parked.update_one({"_id": domain.party(c.recipient_kind, c.recipient_id)}, {"$push": {
        "notices": {"$each": [entry], "$slice": -PARKED_KEEP}}}, upsert=True)


def command_handlers(svc):
    """Notify one at a time (`on_notify`) and in batches (`on_notify_batch`: what one poll returned), with the
    same rules: a party's people, each person's inbox item, deliveries by their preferences (`domain.outgoing`)."""

    def notices(env: Envelope, c: Notify, recipients: list[str]) -> list[Notice]:
        params = {**c.params, **domain.link_param(c.template, c.params, portal_url(svc))}
        follow = c.params.get("programme_id") or None  # told of a programme: reminded of its deadline (R-NOT-04)
        return [Notice(item_id=f"notify:{c.notification_id}" if c.recipient_kind == "account"
                       else f"notify:{c.notification_id}:{account}", recipient_id=account, template=c.template,
                       params=params, follow=follow) for account in recipients]

    def nobody(c: Notify) -> dict:
        return audit_record(actor=None, action="notifications.NobodyToTell", key=c.recipient_id,
                            payload={"notification": c.notification_id})

    async def deliver_parked(key: str) -> int:
        """Sends what waits for party `key` to its people now known; idempotent (inbox items by their ids), and what
        was sent leaves the party's list only after it went out (a notice parked meanwhile stays)."""
        doc = await svc.db.parked.find_one({"_id": key})
        if not doc or not doc.get("notices"):
            return 0
        found, struck = await people.members(svc.db, [key])
        recipients = list(domain.people_of([(key, "")], found, struck))
        batch: list[Notice] = []
        for d in doc["notices"]:
            d = dict(d)
            prefix, told = d.pop("item_prefix", None), d.pop("told", None)
            for n in notices(None, Notify(**d), recipients):
                batch.append(replace(n, item_id=prefix + n.recipient_id, told=told) if prefix else n)
        if not batch:
            return 0
        added = await notify_many(svc, batch)
        await svc.db.parked.update_one({"_id": key}, {"$pullAll": {"notices": doc["notices"]}})
        return added

    async def on_notify(env: Envelope, c: Notify) -> None:
        if c.recipient_kind == "account":
            recipients = [c.recipient_id]
        else:
            recipients = list(await people.people(svc.db, [(domain.party(c.recipient_kind, c.recipient_id), "")]))
            if not recipients:
                await svc.db.audit.insert_one(nobody(c))
                await park(svc, c)
        for n in notices(env, c, recipients):
            await notify(svc, item_id=n.item_id, recipient_id=n.recipient_id, template=n.template, params=n.params)
            if n.follow:
                await alerts.follow(svc.db, n.follow, n.recipient_id)

    async def on_notify_batch(items: list[tuple[Envelope, Notify]]) -> None:
        """A poll's Notify commands together: the people of all their parties in one pass, then `notify_many`."""
        keys = sorted({domain.party(c.recipient_kind, c.recipient_id) for _, c in items if c.recipient_kind != "account"})
        members, struck = await people.members(svc.db, keys)
        batch: list[Notice] = []
        audits: list[dict] = []
        for env, c in items:
            with processing(env):
                if c.recipient_kind == "account":
                    recipients = [c.recipient_id]
                else:
                    recipients = list(domain.people_of([(domain.party(c.recipient_kind, c.recipient_id), "")],
                                                       members, struck))
                    if not recipients:
                        audits.append(nobody(c))
                        await park(svc, c)
                batch += notices(env, c, recipients)
        await notify_many(svc, batch, audits)

    return {Notify: on_notify}, {Notify: on_notify_batch}, deliver_parked


def portal_url(svc) -> str:
    """Where links in notices point: the portal's public address (the gateway), PORTAL_URL or the token issuer."""
    return (svc.settings.portal_url or svc.settings.oidc_issuer).rstrip("/")
