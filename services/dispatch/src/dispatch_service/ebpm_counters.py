"""Counters of the EBPM reports (R-REC-07) kept by dispatch's own events and writes, so a report reads O(cells)
documents instead of its scope's rows (R-OPS-03). Rules and cell layout in `domain.ebpm`.

`ebpm_counters`: one document per cell (report × grouping × scope × dimension values): `n` distinct businesses,
`k_hi`/`k_lo` the sums of their record keys' halves, `s.<measure>` each measure's total. `ebpm_members`: one document
per (cell, business) holding what the business adds there (`v`), so a business counts once per cell however many
records or redeliveries it has.

Maintenance is a *recount* of one business: its records are built from its own rows (its `worklist` documents, web
consultations and outcome surveys: O(its rows)), turned into contributions per cell and compared with its memberships;
each difference moves the counter by the difference. Recounting is idempotent — a second recount finds nothing to
move — so every trigger may repeat: a dispatch status event (after the worklist has it), a business's industry or a
platform's block learnt from identity, a web consultation opened, an outcome survey scheduled or answered (counted by
`outcomes.tally`, which leaves the survey pending until this is done). Each change of a membership is made once
without transactions: (1) claimed on the membership (`rev` compare-and-set; the change — before, after, op id — kept
in `pending`), (2) the counter moved, guarded by the op id in its `_seen`, (3) the membership takes the new value,
(4) the op id leaves `_seen`. A claim left by a crash (older than `stale_claim`) is finished by the next recount of
that business. Who triggers a recount first records the business in `ebpm_dirty` (a revision); the recount removes it
only if no newer trigger came, and the sweep recounts whatever is left (a crash, a busy membership). At start-up, a
database with rows but no counters yet gets all its businesses marked dirty once (marker `ebpm-counters:v1` in
`migrations`), and the sweep counts them.

Only count measures are kept here (dispatch's reports have no amounts); `domain.ebpm.delta` moves sums the same way.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from bson import Int64
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from dispatch_service import sweeps
from dispatch_service.domain.ebpm import (MEASURES, NATIONAL, UNKNOWN, contributions, delta, outcome_records, plan,
                                          uptake_records)
from servicekit import ebpm

log = logging.getLogger("dispatch.ebpm")
MARKER = "ebpm-counters:v1"


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=UTC)


class Counters:
    def __init__(self, db, params):
        """`params`: an async callable giving the `ebpm.Params` (the record keys' secret, kept in the database)."""
        self.db, self.params = db, params
        self.counters, self.members, self.dirty = db.ebpm_counters, db.ebpm_members, db.ebpm_dirty
        self.stale_claim = timedelta(minutes=5)

    async def setup(self) -> None:
        await self.members.create_index("business_id")
        await self.counters.create_index([("report", 1), ("g", 1), ("org", 1), ("fiscal_year", 1), ("block", 1)])
        await self.db.consultations.create_index("business_id")
        await self.db.outcome_surveys.create_index("business_id")
        await self.db.worklist.create_index("platform_id")
        await self.backfill()

    async def backfill(self) -> int:
        """Once per database: every business with rows is marked for counting (the sweep counts it)."""
        if await self.db.migrations.find_one({"_id": MARKER}, {"_id": 1}):
            return 0
        ids: set[str] = set()
        for col in ("worklist", "consultations", "outcome_surveys"):
            ids |= {b for b in await self.db[col].distinct("business_id") if b}
        for bid in ids:
            await self.dirty.update_one({"_id": bid}, {"$inc": {"rev": 1}, "$set": {"at": _now()}}, upsert=True)
        await self.db.migrations.update_one({"_id": MARKER}, {"$set": {"businesses": len(ids), "at": _now()}},
                                            upsert=True)
        return len(ids)

    # --- triggers ---------------------------------------------------------------------------------------------
    async def mark(self, business_id: str) -> int:
        doc = await self.dirty.find_one_and_update({"_id": business_id}, {"$inc": {"rev": 1}, "$set": {"at": _now()}},
                                                   upsert=True, return_document=ReturnDocument.AFTER)
        return doc["rev"]

    async def touch(self, business_id: str) -> bool:
        """Marks the business, recounts it, and clears the mark unless a newer trigger came meanwhile."""
        rev = await self.mark(business_id)
        return await self.recount_marked(business_id, rev)

    async def recount_marked(self, business_id: str, rev: int) -> bool:
        if done := await self.recount(business_id):
            await self.dirty.delete_one({"_id": business_id, "rev": rev})
        return done

    async def on_dispatch(self, env, e) -> None:
        await self.touch(e.business_id)

    async def on_business(self, env, e) -> None:
        await self.touch(e.business_id)

    async def on_platform(self, env, e) -> None:
        """A platform's block learnt (or changed): its businesses' cells move."""
        for bid in await self.db.worklist.distinct("business_id", {"platform_id": e.platform_id}):
            await self.touch(bid)

    async def sweep(self, limit: int = 1000) -> int:
        n = 0
        async for d in self.dirty.find({}).sort("at", 1).limit(limit):
            try:
                n += await self.recount_marked(d["_id"], d["rev"])
            except Exception:
                log.warning("ebpm recount failed; retried next sweep", extra={"fields": {"business": d["_id"]}},
                            exc_info=True)
        return n

    # --- the recount ------------------------------------------------------------------------------------------
    async def wanted(self, business_id: str) -> dict[str, tuple[dict, dict]]:
        """The business's contributions to every counter cell, from its own rows."""
        db = self.db
        dispatches = [d async for d in db.worklist.find({"business_id": business_id}, {
            "fiscal_year": 1, "platform_id": 1, "status": 1, "institution_id": 1})]
        consultations = [c async for c in db.consultations.find({"business_id": business_id}, {"created_at": 1})]
        surveys = [s async for s in db.outcome_surveys.find({"business_id": business_id}, {
            "dispatch_id": 1, "fiscal_year": 1, "block": 1, "answered_at": 1, "results": 1})]
        pids = sorted({d.get("platform_id") for d in dispatches if d.get("platform_id")})
        blocks = {p["_id"]: p.get("bureau_id") async for p in db.platforms.find({"_id": {"$in": pids}}, {"bureau_id": 1})}
        biz = await db.businesses.find_one({"_id": business_id}, {"industry": 1}) or {}
        industry = biz.get("industry") or UNKNOWN
        institution_of = {d["_id"]: d.get("institution_id") for d in dispatches}
        orgs = sorted({d["institution_id"] for d in dispatches if d.get("institution_id")})
        out = contributions("uptake", {NATIONAL: uptake_records(dispatches, consultations, blocks, industry),
                                       **{o: uptake_records(dispatches, (), blocks, industry, orgs={o}) for o in orgs}})
        out |= contributions("outcomes", {NATIONAL: outcome_records(surveys, institution_of, industry),
                                          **{o: outcome_records(surveys, institution_of, industry, orgs={o})
                                             for o in orgs}})
        return {cid: c for cid, c in out.items() if c[0]["org"] == NATIONAL or c[0]["org"] in orgs}

    async def recount(self, business_id: str) -> bool:
        """Brings every counter the business is in up to date; False if a membership was busy (another recount is
        changing it now): the mark stays and the sweep looks again."""
        p = await self.params()
        key = ebpm.key_halves(business_id, p)
        want = await self.wanted(business_id)
        have = {d["cell"]: d async for d in self.members.find({"business_id": business_id})}
        results = await asyncio.gather(*(self._settle(business_id, cid, want.get(cid), have.get(cid), key)
                                         for cid in set(want) | set(have)))
        return all(results)

    async def _settle(self, business_id: str, cid: str, target: tuple[dict, dict] | None, doc: dict | None,
                      key: tuple[int, int]) -> bool:
        if doc is not None and doc.get("pending"):
            pend = doc["pending"]
            if _utc(pend["at"]) > _now() - self.stale_claim:
                return False  # another recount is on it
            res = await self.members.update_one({"_id": doc["_id"], "pending.op": pend["op"], "pending.at": pend["at"]},
                                                {"$set": {"pending.at": _now()}})
            if res.modified_count != 1:
                return False
            await self._apply(doc["_id"], cid, pend)   # a crash's claim, taken over: its move happened once at most
            doc = await self.members.find_one({"_id": doc["_id"]})
        current = doc.get("v") if doc else None
        cell, values = target if target else (None, None)
        if current == values:
            return True
        pend = {"op": uuid.uuid4().hex, "from": current, "to": values, "at": _now(), "key": list(key),
                "cell": cell or (doc or {}).get("cell_fields")}
        mid = f"{cid}|{business_id}"
        if doc is None:
            try:
                await self.members.insert_one({"_id": mid, "business_id": business_id, "cell": cid, "cell_fields": cell,
                                               "rev": 1, "v": None, "pending": pend})
            except DuplicateKeyError:
                return False
        else:
            res = await self.members.update_one({"_id": mid, "rev": doc["rev"]},
                                                {"$set": {"pending": pend}, "$inc": {"rev": 1}})
            if res.modified_count != 1:
                return False
        await self._apply(mid, cid, pend)
        return True

    async def _apply(self, mid: str, cid: str, pend: dict) -> None:
        op, cell = pend["op"], pend["cell"]
        inc = delta(pend["from"], pend["to"], tuple(pend["key"]), MEASURES[cell["report"]])
        for k in ("k_hi", "k_lo"):   # 64-bit from the first write: a 32-bit field would not hold the sums
            if k in inc:
                inc[k] = Int64(inc[k])
        if inc:
            update = {"$inc": inc, "$push": {"_seen": op}, "$setOnInsert": dict(cell)}
            try:
                await self.counters.update_one({"_id": cid, "_seen": {"$ne": op}}, update, upsert=True)
            except DuplicateKeyError:  # the counter exists: created meanwhile, or it has seen the op
                await self.counters.update_one({"_id": cid, "_seen": {"$ne": op}},
                                               {"$inc": inc, "$push": {"_seen": op}})
        await self.members.update_one({"_id": mid, "pending.op": op},
                                      {"$set": {"v": pend["to"]}, "$unset": {"pending": ""}, "$inc": {"rev": 1}})
        if inc:
            await self.counters.update_one({"_id": cid}, {"$pull": {"_seen": op}})

    # --- reads ------------------------------------------------------------------------------------------------
    async def table(self, report: str, by: list[str], fiscal_year: int | None, scope: dict,
                    params: ebpm.Params, labels: dict) -> ebpm.Table:
        """The report's table from the counters: the cells of the rows' grouping merged per value of `by`, the
        total's merged into one. O(cells)."""
        measures = MEASURES[report]
        rows_q, total_q = plan(report, by, fiscal_year, scope)
        table = ebpm.Table(tuple(by), measures, params, labels=labels)
        cells: dict[tuple, ebpm.Summary] = {}
        async for d in self.counters.find(rows_q, {"_seen": 0}):
            cells.setdefault(tuple(d[k] for k in by), ebpm.Summary()).merge(_summary(d, measures))
        for k, s in cells.items():
            if s.n > 0:  # a cell every business left (e.g. moved to another industry) is no cell
                table.put(k, s)
        total = ebpm.Summary()
        async for d in self.counters.find(total_q, {"_seen": 0}):
            total.merge(_summary(d, measures))
        table.put_total(total)
        return table


def _summary(d: dict, measures) -> ebpm.Summary:
    s = d.get("s") or {}
    return ebpm.Summary(n=int(d.get("n", 0)), key_sum=ebpm.join_halves(int(d.get("k_hi", 0)), int(d.get("k_lo", 0))),
                        sums={m.name: s.get(m.name, 0) for m in measures})


async def run(counters: Counters, interval: float) -> None:
    await sweeps.every(interval, counters.sweep, log=log, did="ebpm counters recounted", unit="businesses",
                       failed="ebpm counter sweep failed")
