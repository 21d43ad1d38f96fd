"""Kafka handlers of the notifications service: rating prompts (R-RAT-03, R-NOT-02), dispatch status
notices to each party (R-NOT-02) and the Notify command; idempotent by event / notification id."""
from __future__ import annotations

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.notifications import Notify
from contracts.events.ratings import RatingGiven, RatingOwed
from notifications_service import domain
from notifications_service.store import audit, notify, now, today_jst


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
        for r in domain.status_recipients(e):
            await notify(svc, item_id=f"{env.event_id}:{r}", recipient_id=r, template="dispatch_status",
                         params=domain.status_params(e))

    return {DispatchStatusChanged: on_status}


def command_handlers(svc):
    async def on_notify(env: Envelope, c: Notify) -> None:
        await notify(svc, item_id=f"notify:{c.notification_id}", recipient_id=c.recipient_id,
                     template=c.template, params=c.params)

    return {Notify: on_notify}
