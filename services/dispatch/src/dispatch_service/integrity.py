"""Integrity signals (R-DSP-15) kept from events: dispatch reads its own `dispatch.events` (and ratings' RatingGiven)
and raises flags with their evidence into the agency's queue (`integrity_flags`). Rules in domain.integrity; a flag's
id is deterministic, so a redelivered event raises nothing twice; flags never act (R-DSP-13 stays human)."""
from __future__ import annotations

import logging

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged, DispatchStatus as S
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered
from contracts.events.ratings import RatingGiven
from dispatch_service.domain import integrity as rules
from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.domain.eligibility import COUNTING_STATUSES
from dispatch_service.store import Store, now
from servicekit.bus import processing
from servicekit.store import apply_once, backfill_id_lists

log = logging.getLogger("dispatch.integrity")
PAIRS_MARKER = "dispatch-pairs:v1"


def pair_id(d: dict) -> str:
    return f"{d['expert_id']}|{d['business_id']}"


def upto(ids: list[str], dispatch_id: str) -> set[str]:
    """A pair's dispatch ids in the order they were accepted, up to `dispatch_id` (with it, if it is not there yet)."""
    return set(ids[:ids.index(dispatch_id) + 1]) if dispatch_id in ids else {*ids, dispatch_id}


class Integrity:
    def __init__(self, store: Store, params: rules.IntegrityParams):
        self.store, self.db, self.p = store, store.db, params

    async def setup(self) -> None:
        await self.db.integrity_flags.create_index([("status", 1), ("raised_at", 1)])
        await self.db.integrity_flags.create_index("expert_id")
        await self.db.integrity_flags.create_index("dispatch_id")
        await self.db.report_bands.create_index("key")
        await self.store.dispatches.create_index([("respond_by", 1), ("status", 1)])
        await self.store.dispatches.create_index([("expert_id", 1), ("business_id", 1)])
        await self.backfill_pairs()

    async def raise_flag(self, flag: rules.Flag | None, cause: Envelope | None = None) -> None:
        if flag is None:
            return
        await self.db.integrity_flags.update_one({"_id": flag.flag_id}, {"$setOnInsert": {
            "code": flag.code, "rule": flag.rule, "dispatch_id": flag.dispatch_id, "expert_id": flag.expert_id,
            "business_id": flag.business_id, "evidence": flag.evidence, "message": flag.message, "status": "open",
            "raised_at": now(), "event_id": cause.event_id if cause else None}}, upsert=True)

    # --- the pairs' dispatches -----------------------------------------------------------------------------
    # `dispatch_pairs`: one document per expert and business (`_id` "expert|business") listing the pair's dispatches
    # that reached `accepted`, so the pair is read by `_id` (a filter on expert and business scans the collection on
    # the local server: once per accepted dispatch). Filled by ACCEPTED events and, once per database, by a pass over
    # the dispatches written before it existed (marker in `migrations`).
    async def backfill_pairs(self) -> int:
        return await backfill_id_lists(self.db, PAIRS_MARKER, self.store.dispatches.find(
            {"status": {"$in": sorted(COUNTING_STATUSES)}}, {"expert_id": 1, "business_id": 1}), pair_id,
            self.db.dispatch_pairs)

    async def pair(self, d: dict) -> list[dict]:
        """The pair's dispatches that count (accepted or further), `d` included: ids from the pair's document, then read
        by `_id`."""
        doc = await self.db.dispatch_pairs.find_one({"_id": pair_id(d)})
        return await self.counting({d["_id"], *((doc or {}).get("ids") or ())})

    async def counting(self, ids: set[str], over: int = 0) -> list[dict]:
        """Those of `ids` that count; none read when there are no more than `over` (a rule that needs more than `over`
        of them cannot hold)."""
        if len(ids) <= over:
            return []
        cur = self.store.dispatches.find({"_id": {"$in": sorted(ids)}, "status": {"$in": sorted(COUNTING_STATUSES)}},
                                         {"fiscal_year": 1, "route": 1})
        return [x async for x in cur]

    async def on_accepted(self, items: list[tuple[Envelope, DispatchStatusChanged]]) -> None:
        """Accepted dispatches (a batch of status events, or one): every pair indexed with ONE bulk write and read back
        with one `_id: {$in}`; each dispatch then weighed against its pair's dispatches accepted up to it (`$addToSet`
        keeps the order of arrival), and only a pair over the cap is read further (a first few: the usual case)."""
        ds = [(env, {"_id": e.dispatch_id, "expert_id": e.expert_id, "business_id": e.business_id,
                     "fiscal_year": e.fiscal_year}) for env, e in items]
        ops = [UpdateOne({"_id": pair_id(d)}, {"$addToSet": {"ids": d["_id"]}}, upsert=True) for _, d in ds]
        try:
            await self.db.dispatch_pairs.bulk_write(ops, ordered=False)
        except BulkWriteError as err:  # another replica created a new pair's document first: once more (idempotent)
            if any(w["code"] != 11000 for w in err.details["writeErrors"]):
                raise
            await self.db.dispatch_pairs.bulk_write(ops, ordered=False)
        pairs = {p["_id"]: p.get("ids") or [] async for p in
                 self.db.dispatch_pairs.find({"_id": {"$in": sorted({pair_id(d) for _, d in ds})}})}
        for env, d in ds:
            counted = await self.counting(upto(pairs.get(pair_id(d), []), d["_id"]), self.p.pair_cap)
            with processing(env):
                await self.raise_flag(rules.repeated_pair(d, counted, self.p), env)

    # --- reactions --------------------------------------------------------------------------------------
    async def on_status(self, env: Envelope, e: DispatchStatusChanged) -> None:
        if e.status == S.ACCEPTED:  # what the rule needs is in the event
            await self.on_accepted([(env, e)])
            return
        if e.status not in (S.VISITED, S.REPORTED):
            return
        d = await self.store.get(e.dispatch_id)
        if d is None:
            return
        if e.status == S.VISITED:
            business = await self.db.businesses.find_one({"_id": d["business_id"]}) or {}
            for v in d.get("visits", []):
                if v["mode"] == "onsite" and v.get("check_in"):
                    await self.raise_flag(rules.far_check_in(d, v["check_in"]["location"], business.get("prefecture"),
                                                             self.p), env)
        elif e.status == S.REPORTED and d.get("report"):
            await self.check_report(d, env)

    async def check_report(self, d: dict, env: Envelope | None) -> None:
        text = rules.report_text(d["report"])
        keys = rules.band_keys(text, self.p)
        shared: dict[str, int] = {}
        async for b in self.db.report_bands.find({"key": {"$in": keys}}, {"dispatch_id": 1}):
            if b["dispatch_id"] != d["_id"]:
                shared[b["dispatch_id"]] = shared.get(b["dispatch_id"], 0) + 1
        candidates = [{"_id": o["_id"], "expert_id": o["expert_id"], "business_id": o["business_id"],
                       "text": rules.report_text(o["report"])}
                      async for o in self.store.dispatches.find({"_id": {"$in": rules.most_shared(shared)}},
                                                                {"report": 1, "expert_id": 1, "business_id": 1})]
        await self.raise_flag(rules.copied_report(d, text, candidates, self.p), env)
        for k in keys:  # indexed after the comparison: the report is a candidate for the ones that come later
            await self.db.report_bands.update_one({"_id": f"{d['_id']}:{k.split(':')[0]}"},
                                                  {"$set": {"key": k, "dispatch_id": d["_id"]}}, upsert=True)

    async def on_rating(self, env: Envelope, e: RatingGiven) -> None:
        if e.rater_kind != "business":
            return
        d = await self.store.get(e.dispatch_id)
        if d is None:
            return
        expert = await self.db.experts.find_one({"_id": d["expert_id"]}, {"related_business_ids": 1}) or {}
        await self.raise_flag(rules.network_rating(d, expert.get("related_business_ids", []), len(await self.pair(d)),
                                                   self.p), env)

    async def sweep_overdue(self) -> int:
        """R-EX-06: dispatches whose expert did not answer by the deadline go to the agency's queue once."""
        at, n = now(), 0
        async for d in self.store.dispatches.find({"respond_by": {"$lt": at}, "status": {"$in": ["requested", "approved"]},
                                                   "response_alerted": {"$ne": True}}).limit(500):
            if Dispatch(d, at).response_overdue():
                await self.raise_flag(rules.response_overdue(d, at))
                n += 1
            await self.store.dispatches.update_one({"_id": d["_id"]}, {"$set": {"response_alerted": True}})
        return n

    async def run(self, interval: float) -> None:
        import asyncio
        while True:
            try:
                if n := await self.sweep_overdue():
                    log.info("expert responses overdue", extra={"fields": {"dispatches": n}})
            except Exception:
                log.exception("overdue sweep failed")
            await asyncio.sleep(interval)

    async def on_business(self, env: Envelope, e: BusinessRegistered | BusinessProfileChanged) -> None:
        await apply_once(self.db.businesses, e.business_id, env.event_id, {"$set": {"prefecture": e.prefecture,
                                                                                  "industry": e.industry}})  # R-REC-07

    def handlers(self):
        return ({DispatchStatusChanged: self.on_status}, {RatingGiven: self.on_rating},
                {BusinessRegistered: self.on_business, BusinessProfileChanged: self.on_business})
