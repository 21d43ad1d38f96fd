"""Support history (個人カルテ, R-POR-06) in MongoDB, and the clock of R-DSP-05's follow-up reminders.

Collections: `support_log` (consultations logged by institutions; each insert carries its ConsultationLogged event
through the outbox), `history_grants` (one document per business and institution, `_id` = business:org, the acts of
granting and withdrawing listed in it; each act carries its event through the outbox, which also makes it the audit
entry), `history_reads` (every read of a business's history that showed another institution's entries, for the
business to list). Rules in domain.history."""
from __future__ import annotations

import logging

from contracts.events.history import ConsultationLogged, HistorySharingGranted, HistorySharingWithdrawn
from dispatch_service.domain import history as rules
from dispatch_service.domain.dispatch import Dispatch, new_id
from dispatch_service import sweeps
from dispatch_service.store import Store, now

log = logging.getLogger("dispatch.history")

OUTBOX = ["support_log", "history_grants"]
FOLLOWING_UP = ["reported", "confirmed", "paid"]  # the statuses in which a route-A dispatch is followed up


def grant_id(business_id: str, org_id: str) -> str:
    return f"{business_id}:{org_id}"


class SupportHistory:
    def __init__(self, store: Store, params: rules.FollowUpParams):
        self.store, self.db, self.p = store, store.db, params

    async def setup(self) -> None:
        await self.db.support_log.create_index([("business_id", 1), ("consulted_on", -1)])
        await self.db.history_grants.create_index([("business_id", 1)])
        await self.db.history_grants.create_index([("org_id", 1)])
        await self.db.history_reads.create_index([("business_id", 1), ("at", -1)])
        await self.store.dispatches.create_index([("route", 1), ("status", 1)])

    # --- consultations ----------------------------------------------------------------------------------------
    async def log(self, *, business_id: str, org_id: str, consulted_on, topic: str, summary: str,
                  next_steps: str | None, staff: str | None, actor: str) -> dict:
        rules.check_entry(consulted_on, now().astimezone(rules.JST).date())
        doc = {"_id": new_id("hist"), "business_id": business_id, "org_id": org_id,
               "consulted_on": consulted_on.isoformat(), "topic": topic, "summary": summary,
               "next_steps": next_steps, "staff": staff, "logged_by": actor, "logged_at": now()}
        event = ConsultationLogged(entry_id=doc["_id"], business_id=business_id, org_id=org_id,
                                   consulted_on=consulted_on, subject=topic, logged_by=actor)
        await self.store.svc.insert(self.db.support_log, doc, events=[self.store.svc.event(event, actor=actor)])
        return rules.entry_item(doc)

    # --- sharing ------------------------------------------------------------------------------------------------
    async def grant_of(self, business_id: str, org_id: str) -> dict | None:
        return await self.db.history_grants.find_one({"_id": grant_id(business_id, org_id)}, {"_outbox": 0})

    async def shared_with(self, business_id: str, org_ids: set[str]) -> bool:
        for org in org_ids:
            if rules.in_force(await self.grant_of(business_id, org)):
                return True
        return False

    async def grant(self, business_id: str, org_id: str, actor: str) -> dict:
        async with self.store.lock(grant_id(business_id, org_id)):
            current = await self.grant_of(business_id, org_id)
            fields = rules.grant(current, business_id=business_id, org_id=org_id, actor=actor, now=now())
            if fields is not None:
                event = HistorySharingGranted(business_id=business_id, org_id=org_id, granted_by=actor,
                                              granted_at=fields["granted_at"])
                await self.store.svc.write(self.db.history_grants, {"_id": grant_id(business_id, org_id)},
                                           {"$set": fields}, upsert=True,
                                           events=[self.store.svc.event(event, actor=actor)])
        return await self.grant_of(business_id, org_id)

    async def withdraw(self, business_id: str, org_id: str, actor: str) -> dict:
        async with self.store.lock(grant_id(business_id, org_id)):
            current = await self.grant_of(business_id, org_id)
            fields = rules.withdraw(current, org_id=org_id, actor=actor, now=now())
            event = HistorySharingWithdrawn(business_id=business_id, org_id=org_id, withdrawn_by=actor,
                                            withdrawn_at=fields["withdrawn_at"])
            await self.store.svc.write(self.db.history_grants, {"_id": grant_id(business_id, org_id)},
                                       {"$set": fields}, events=[self.store.svc.event(event, actor=actor)])
        return await self.grant_of(business_id, org_id)

    async def grants(self, business_id: str) -> list[dict]:
        out = []
        async for g in self.db.history_grants.find({"business_id": business_id}, {"_outbox": 0}).limit(1000):
            org = await self.db.organisations.find_one({"_id": g["org_id"]}, {"name": 1}) or {}
            out.append({"org_id": g["org_id"], "org_name": org.get("name"), "in_force": rules.in_force(g),
                        "granted_at": g.get("granted_at"), "granted_by": g.get("granted_by"),
                        "withdrawn_at": g.get("withdrawn_at"), "withdrawn_by": g.get("withdrawn_by"),
                        "acts": g.get("acts", [])})
        return sorted(out, key=lambda g: g["org_id"])

    async def shared_with_orgs(self, org_ids: set[str], limit: int = 1000) -> list[dict]:
        """The businesses that share their history with one of these institutions now."""
        cur = self.db.history_grants.find({"org_id": {"$in": sorted(org_ids)}, "withdrawn_at": None},
                                          {"_outbox": 0, "acts": 0}).limit(limit)
        found = [{"business_id": g["business_id"], "org_id": g["org_id"], "granted_at": g["granted_at"]}
                 async for g in cur if rules.in_force(g)]
        return sorted(found, key=lambda g: (g["business_id"], g["org_id"]))

    # --- reading ------------------------------------------------------------------------------------------------
    async def view(self, business_id: str, viewer: rules.Viewer, reader: str, limit: int = 500) -> list[dict]:
        """The history `viewer` may see; a read showing another institution's entries is recorded (R-POR-06)."""
        q: dict = {"business_id": business_id}
        if viewer.kind == "institution" and not viewer.shared:
            q["org_id"] = {"$in": sorted(viewer.org_ids)}
        entries = [e async for e in self.db.support_log.find(q, {"_outbox": 0}).sort("consulted_on", -1).limit(limit)]
        dispatches = [d async for d in self.store.dispatches.find(
            {"business_id": business_id, "route": "A"}, {"route": 1, "institution_id": 1, "follow_ups": 1}).limit(limit)]
        items = rules.view(entries, dispatches, viewer)[:limit]
        if read := rules.others_read(items, viewer):
            await self.db.history_reads.insert_one({
                "_id": new_id("hread"), "business_id": business_id, "reader": reader, "reader_kind": viewer.kind,
                "reader_orgs": sorted(viewer.org_ids), "orgs_read": read, "items": len(items), "at": now()})
            await self.store.audit(reader, "dispatch.SupportHistoryRead", business_id,
                                   {"reader_kind": viewer.kind, "reader_orgs": sorted(viewer.org_ids),
                                    "orgs_read": read})
        return items

    async def reads(self, business_id: str, limit: int = 500) -> list[dict]:
        cur = self.db.history_reads.find({"business_id": business_id}).sort("at", -1).limit(limit)
        return [{k: v for k, v in r.items() if k not in ("_id", "business_id")} | {"read_id": r["_id"]}
                async for r in cur]

    # --- R-DSP-05 reminders on the clock ------------------------------------------------------------------------
    async def sweep(self) -> int:
        """One pass over the route-A dispatches being followed up; returns how many reminders were emitted."""
        sent = 0
        async for d in self.store.dispatches.find({"route": "A", "status": {"$in": FOLLOWING_UP}}, {
                "route": 1, "institution_id": 1, "report.filed_at": 1, "follow_ups.at": 1, "follow_up_reminded": 1}):
            if rules.follow_up_due(d, now(), self.p) is None:  # most are not due: no write, no lock
                continue
            after = await self.store.change(d["_id"], lambda doc: Dispatch(doc, now()).follow_up_reminder(self.p),
                                            actor="dispatch-follow-up-clock", reload=False)
            sent += bool(after and after.get("_changed"))
        return sent


async def run(history: SupportHistory, interval: float) -> None:
    await sweeps.every(interval, history.sweep, log=log, did="follow-up reminders emitted", unit="dispatches",
                       failed="follow-up sweep failed")
