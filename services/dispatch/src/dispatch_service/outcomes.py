"""Outcome surveys (R-REC-08): when a dispatch is paid, dispatch schedules the follow-up surveys to the business; the
clock sends each when due (and one reminder) as a Notify command through the survey's outbox; the business answers
at `/requests/{id}/outcomes/{months}`. Rules in domain.outcomes."""
from __future__ import annotations

import logging
import os
from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged, DispatchStatus as S
from contracts.events.notifications import Notify
from dispatch_service.domain.outcomes import OutcomeParams, next_send, waves
from dispatch_service import sweeps
from dispatch_service.store import Store, now

log = logging.getLogger("dispatch.outcomes")


def params_from_env() -> OutcomeParams:
    months = tuple(int(m) for m in os.environ.get("OUTCOME_SURVEY_MONTHS", "3,12").split(","))
    return OutcomeParams(waves_months=months, reminder_days=int(os.environ.get("OUTCOME_REMINDER_DAYS", "14")))


class Outcomes:
    def __init__(self, store: Store, params: OutcomeParams):
        self.store, self.col, self.p = store, store.db.outcome_surveys, params

    async def setup(self) -> None:
        await self.col.create_index([("answered_at", 1), ("due_at", 1)])
        await self.col.create_index([("fiscal_year", 1)])
        await self.col.create_index("dispatch_id")

    async def on_status(self, env: Envelope, e: DispatchStatusChanged) -> None:
        """Paid: the surveys are scheduled (idempotent: one document per dispatch and wave)."""
        if e.status != S.PAID:
            return
        d = await self.store.get(e.dispatch_id)
        if d is None:
            return
        platform = await self.store.db.platforms.find_one({"_id": d.get("platform_id")}) or {}
        for months, due in waves(env.occurred_at, self.p):
            await self.col.update_one({"_id": f"{d['_id']}:{months}"}, {"$setOnInsert": {
                "dispatch_id": d["_id"], "months": months, "due_at": due, "business_id": d["business_id"],
                "business_account_id": d.get("business_account_id"), "expert_id": d["expert_id"],
                "fiscal_year": d["fiscal_year"], "block": platform.get("bureau_id"), "field": d.get("issue_kind"),
                "answered_at": None, "created_at": now()}}, upsert=True)

    async def sweep(self) -> int:
        """Sends the surveys (and reminders) that are due; returns how many."""
        sent, at = 0, now()
        async for s in self.col.find({"answered_at": None, "due_at": {"$lte": at}}).limit(1000):
            what = next_send(s, at, self.p)
            if what is None or not s.get("business_account_id"):
                continue
            field = "sent_at" if what == "survey" else "reminded_at"
            msg = Notify(notification_id=f"outcome-{s['_id']}-{what}", recipient_id=s["business_account_id"],
                         template="outcome_survey", params={"dispatch_id": s["dispatch_id"], "months": str(s["months"]),
                                                            "reminder": "yes" if what == "reminder" else "no"})
            res = await self.store.svc.write(self.col, {"_id": s["_id"], field: s.get(field)}, {"$set": {field: at}},
                                             events=[self.store.svc.event(msg, actor="dispatch-outcomes")])
            sent += res.modified_count
        return sent

    async def rows(self, fiscal_year: int | None) -> list[dict]:
        """One row per dispatch (its waves together) for the KPI."""
        q = {} if fiscal_year is None else {"fiscal_year": fiscal_year}
        per: dict[str, dict] = {}
        async for s in self.col.find(q, {"_outbox": 0}):
            r = per.setdefault(s["dispatch_id"], {k: s.get(k) for k in ("business_id", "fiscal_year", "block",
                                                                        "field", "expert_id")}
                               | {"answered": False, "results": False})
            if s.get("answered_at"):
                r["answered"] = True
                r["results"] = r["results"] or bool(s.get("results"))
        return list(per.values())


async def run(outcomes: Outcomes, interval: float) -> None:
    await sweeps.every(interval, outcomes.sweep, log=log, did="outcome surveys sent", unit="surveys",
                       failed="outcome sweep failed")
