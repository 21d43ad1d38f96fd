"""Outcome surveys (R-REC-08): when a dispatch is paid, dispatch schedules the follow-up surveys to the business; the
clock sends each when due (and one reminder) as a Notify command through the survey's outbox; the business answers
at `/requests/{id}/outcomes/{months}`. Rules in domain.outcomes.

The KPI is read from counters, not from the surveys: `outcome_counters` holds one document per grouping and scope
(fiscal year or all, block or all; see `domain.outcomes.cells`) with, per group inside it, the distinct businesses
supported, answering and reporting results; `outcome_members` remembers, per counter and business, what has been
counted, so a business counts once per group however many surveys or redeliveries it has. Without multi-document
transactions the counters follow the survey's own write: that write marks the survey `tally: "pending"` (same
document, same update); `tally` then brings the counters up to date, each step repeatable and each raise done once
(claimed on the membership, guarded by its op id on the counter); the sweep finishes whatever a crash left pending.
A KPI read is one document read by `_id`: O(groups), whatever the number of surveys."""
from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged, DispatchStatus as S
from contracts.events.notifications import Notify
from dispatch_service.domain.outcomes import (FLAGS, OutcomeParams, cell_id, cells, flags_of, group_field, group_key,
                                              next_send, read_scope, scope_id, waves)
from dispatch_service import sweeps
from dispatch_service.store import Store, now

log = logging.getLogger("dispatch.outcomes")


class Outcomes:
    def __init__(self, store: Store, params: OutcomeParams):
        self.store, self.col, self.p = store, store.db.outcome_surveys, params
        self.counters, self.members = store.db.outcome_counters, store.db.outcome_members
        self.stale_claim = timedelta(minutes=5)  # a claim to raise a counter older than this was left by a crash
        self._tasks: set[asyncio.Task] = set()   # counting after answers (held so they are not collected)
        self.on_counted = None  # async (survey) -> bool: the EBPM counters' copy and recount (app.py); False: later

    async def setup(self) -> None:
        await self.col.create_index([("answered_at", 1), ("due_at", 1)])
        await self.col.create_index([("fiscal_year", 1)])
        await self.col.create_index("dispatch_id")
        await self.col.create_index("tally")
        # surveys from before the counters existed are counted by the sweep (once: counting is idempotent)
        await self.col.update_many({"tally": {"$exists": False}}, {"$set": {"tally": "pending"},
                                                                   "$inc": {"tally_rev": 1}})

    async def on_status(self, env: Envelope, e: DispatchStatusChanged) -> None:
        """Paid: the surveys are scheduled (idempotent: one document per dispatch and wave)."""
        if e.status != S.PAID:
            return
        d = await self.store.get(e.dispatch_id)
        if d is None:
            return
        platform = await self.store.db.platforms.find_one({"_id": d.get("platform_id")}) or {}
        planned = sorted(waves(env.occurred_at, self.p), reverse=True)
        # every wave exists before any is counted, the latest first: once the first survey can be sent (the sweep
        # sends what is due), the later ones are there to be answered too (a business may answer them early)
        for months, due in planned:
            await self.col.update_one({"_id": f"{d['_id']}:{months}"}, {"$setOnInsert": {
                "dispatch_id": d["_id"], "months": months, "due_at": due, "business_id": d["business_id"],
                "business_account_id": d.get("business_account_id"), "expert_id": d["expert_id"],
                "fiscal_year": d["fiscal_year"], "block": platform.get("bureau_id"), "field": d.get("issue_kind"),
                "answered_at": None, "created_at": now(), "tally": "pending", "tally_rev": 1}}, upsert=True)
        for months, _ in planned:
            await self.tally(f"{d['_id']}:{months}")

    async def answer(self, survey_id: str, *, by: str, answer: dict, results: bool, wait: bool = True) -> bool:
        """Records the business's answer (False: no unanswered survey of that id); the same write marks the survey
        for the counters, which are then brought up to date — before returning, or (`wait=False`, the HTTP path: a
        dozen counters cost the business's request nothing) in a task of this process; the sweep finishes whatever
        either leaves."""
        res = await self.col.update_one({"_id": survey_id, "answered_at": None}, {
            "$set": {"answered_at": now(), "answered_by": by, "answer": answer, "results": results,
                     "tally": "pending"}, "$inc": {"tally_rev": 1}})
        if res.matched_count == 0:
            return False
        if wait:
            await self._tally_logged(survey_id)
        else:
            task = asyncio.create_task(self._tally_logged(survey_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _tally_logged(self, survey_id: str) -> None:
        try:
            await self.tally(survey_id)
        except Exception:  # the answer is kept; the sweep counts it
            log.warning("outcome counters not updated yet; the sweep will", extra={"fields": {"survey": survey_id}},
                        exc_info=True)

    async def tally(self, survey_id: str) -> bool:
        """Brings the KPI counters up to date with one survey: idempotent, safe to repeat at any point and to run
        concurrently (two replicas' sweeps, two answers of one business). Returns whether this call finished the
        survey's counting (False: nothing pending, or another tally is still raising a counter it needs).

        Per membership (counter × business) and flag: (1) the flag is set on the membership; (2) one tally claims the
        raise (`counted_<flag>` absent → the time of the claim); (3) the counter is raised, guarded by the op id in
        its `_seen`; (4) the membership is marked counted; (5) the op id leaves `_seen` again, so counters stay small.
        A claim left by a crash (older than `stale_claim`) is finished by whichever tally meets it next: its raise
        happened once at most, and `_seen` says whether."""
        s = await self.col.find_one({"_id": survey_id, "tally": "pending"}, {"_outbox": 0, "answer": 0})
        if s is None:
            return False
        flags = flags_of(s)
        ids = {cell_id(c): c for c in cells(s)}
        members = {f"{cid}|{s['business_id']}": cid for cid in ids}
        at = now()
        docs = await asyncio.gather(*(_upsert_returning(self.members, m, {f: True for f in flags}) for m in members))

        async def claim(m: str, f: str, doc: dict) -> tuple[str, str] | str | None:
            mark = doc.get(f"counted_{f}")
            if mark is True or not doc.get(f):
                return None
            if mark is None:  # nobody has claimed this raise: try
                res = await self.members.update_one({"_id": m, f"counted_{f}": {"$exists": False}},
                                                    {"$set": {f"counted_{f}": at}})
                return (m, f) if res.modified_count == 1 else None
            if _as_utc(mark) < at - self.stale_claim:  # a claim a crash left behind: take it over
                res = await self.members.update_one({"_id": m, f"counted_{f}": mark}, {"$set": {f"counted_{f}": at}})
                return (m, f) if res.modified_count == 1 else None
            return "busy"  # another tally is on it now

        claims = await asyncio.gather(*(claim(m, f, d) for d in docs for m in [d["_id"]] for f in FLAGS))
        mine = [c for c in claims if isinstance(c, tuple)]

        async def raise_(m: str, f: str) -> None:
            c, op = ids[members[m]], f"{m}:{f}"
            scope, inc = scope_id(c["by"], c["fy"], c["block"]), {f"groups.{group_field(c['key'])}.{f}": 1}
            try:
                await self.counters.update_one({"_id": scope, "_seen": {"$ne": op}}, {
                    "$inc": inc, "$push": {"_seen": op},
                    "$setOnInsert": {"by": c["by"], "fy": c["fy"], "block": c["block"]}}, upsert=True)
            except DuplicateKeyError:  # the counter exists: inserted meanwhile, or it has seen the op
                await self.counters.update_one({"_id": scope, "_seen": {"$ne": op}},
                                               {"$inc": inc, "$push": {"_seen": op}})
            await self.members.update_one({"_id": m}, {"$set": {f"counted_{f}": True}})
            await self.counters.update_one({"_id": scope}, {"$pull": {"_seen": op}})
        await asyncio.gather(*(raise_(m, f) for m, f in mine))
        if "busy" in claims:
            return False  # left pending: the sweep looks again once the other tally is done (or its claim stale)
        if self.on_counted is not None and not await self.on_counted(s):
            return False  # the EBPM counters (R-REC-07) not done yet: left pending, the sweep looks again
        await self.col.update_one({"_id": survey_id, "tally": "pending", "tally_rev": s.get("tally_rev")},
                                  {"$set": {"tally": "done"}})
        return True

    async def tally_pending(self, limit: int = 1000) -> int:
        n = 0
        async for s in self.col.find({"tally": "pending"}, {"_id": 1}).limit(limit):
            n += await self.tally(s["_id"])
        return n

    async def counts(self, by: str, fiscal_year: int | None, block: str | None) -> list[dict]:
        """The KPI's counts per group of `by` (one fiscal year or all, one block or all): one document read by `_id`,
        its size proportional to the groups, whatever the number of surveys."""
        scope, only = read_scope(by, fiscal_year, block)
        doc = await self.counters.find_one({"_id": scope}, {"_seen": 0}) or {}
        return [{"key": group_key(by, k), **{f: int(g.get(f, 0)) for f in FLAGS}}
                for k, g in (doc.get("groups") or {}).items() if only is None or k == only]

    async def sweep(self) -> int:
        """Sends the surveys (and reminders) that are due, and counts what a crash left uncounted; returns how many
        were sent."""
        await self.tally_pending()
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
        """One row per dispatch (its waves together), read from every survey: the recount the counters are checked
        against (tests, bench/); the KPI endpoint reads `counts`."""
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


async def _upsert_returning(col, doc_id: str, sets: dict) -> dict:
    """`$set` on one document, created if missing, returning it after the update (a collision of two creations is
    retried: the update is repeatable)."""
    for _ in range(3):
        try:
            return await col.find_one_and_update({"_id": doc_id}, {"$set": sets}, upsert=True,
                                                 return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            continue
    raise DuplicateKeyError(f"outcome membership {doc_id}: creation kept colliding")


def _as_utc(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=UTC)


async def run(outcomes: Outcomes, interval: float) -> None:
    await sweeps.every(interval, outcomes.sweep, log=log, did="outcome surveys sent", unit="surveys",
                       failed="outcome sweep failed")
