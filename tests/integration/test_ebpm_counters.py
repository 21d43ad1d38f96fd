"""R-REC-07 / R-OPS-03: dispatch's EBPM reports read counters kept by its events, and publish exactly what the rows read
at request time would. On the real MongoDB-wire server: dispatches (several per business, across years, blocks and
institutions, some on a platform whose block is learnt late), web consultations and outcome surveys, each counted as
its trigger counts it; then statuses change, industries change, surveys are answered, triggers are redelivered and run
concurrently, and a recount crashes half-way — after each step every report (every grouping, order of dimensions,
fiscal year filter and scope) built from the counters equals the one built from the rows."""
from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pymongo import AsyncMongoClient

from dispatch_service.ebpm_counters import Counters
from dispatch_service.ebpm_reports import LABELS, rows_table
from servicekit import ebpm

P1 = ebpm.Params(secret=b"ebpm-counters-test", min_cell=1)   # every cell shows its figures: every figure compared
P5 = ebpm.Params(secret=b"ebpm-counters-test", min_cell=5)
BLOCKS = ["kanto", "tohoku", "kyushu"]
YEARS = [2025, 2026]
ORGS = ["org-1", "org-2", "org-3"]


async def params():
    return P1


async def in_batches(coros, size: int = 16) -> list:
    out = []
    for i in range(0, len(coros), size):
        out += await asyncio.gather(*coros[i:i + size])
    return out


def bys():
    dims = ("fiscal_year", "block", "industry")
    yield from ([list(c) for r in (1, 2, 3) for c in itertools.combinations(dims, r)])
    yield ["industry", "fiscal_year"]           # another order of the same dimensions
    yield ["industry", "block", "fiscal_year"]


def truth(t: ebpm.Table) -> dict:
    """Each cell's true figures (businesses, key sum, measures), the total's under None."""
    out = {}
    for k, cell in [*t.cells.items(), (None, t.total)]:
        s = cell if isinstance(cell, ebpm.Summary) else ebpm.summarise(cell, t.measures, t.p)
        out[k] = (s.n, s.key_sum, {m: v for m, v in s.sums.items() if v})
    return out


async def check_equal(c: Counters, db, p: ebpm.Params = P1) -> int:
    n = 0
    scopes = [({}, {}), *(({"block": b}, {"block": b}) for b in BLOCKS),
              *(({"orgs": [o]}, {"org": o}) for o in ORGS)]
    for report in ("uptake", "outcomes"):
        for by in bys():
            for fy in (None, *YEARS):
                for row_scope, counter_scope in scopes:
                    rows = await rows_table(db, p, report, by, fy, row_scope)
                    counted = await c.table(report, by, fy, counter_scope, p, dict(LABELS))
                    assert truth(counted) == truth(rows), (report, by, fy, row_scope)
                    assert counted.publish() == rows.publish(), (report, by, fy, row_scope)
                    n += 1
    return n


@pytest.mark.timeout(900)
async def test_R_REC_07_counters_publish_what_the_rows_would_after_every_kind_of_change(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    try:
        db = client[ns.db("dispatch")]
        c = Counters(db, params)
        await c.setup()
        rnd = random.Random(7)
        businesses = [f"b{i}" for i in range(40)]
        await db.businesses.insert_many([{"_id": b, "industry": rnd.choice(["製造業", "小売業", "建設業"])}
                                         for b in businesses[:-3]])          # 3 whose industry is not known: "—"
        await db.platforms.insert_many([{"_id": f"pf-{b}", "bureau_id": b} for b in BLOCKS])
        dispatches = []
        for i in range(160):
            dispatches.append({"_id": f"d{i}", "business_id": rnd.choice(businesses), "fiscal_year": rnd.choice(YEARS),
                               "platform_id": rnd.choice([*(f"pf-{b}" for b in BLOCKS), "pf-late"]),
                               "institution_id": rnd.choice([*ORGS, None]),
                               "status": rnd.choice(["requested", "approved", "paid"])})

        async def status(d: dict) -> None:   # as the worklist consumer, then the EBPM trigger
            await db.worklist.update_one({"_id": d["_id"]}, {"$set": d}, upsert=True)
            await c.on_dispatch(None, SimpleNamespace(dispatch_id=d["_id"], business_id=d["business_id"]))
        await in_batches([status(d) for d in dispatches])
        jst = datetime(2026, 3, 31, 16, tzinfo=UTC)   # 1 April 01:00 JST: fiscal year 2026 (R-DSP-fiscal)
        consultations = [{"_id": f"c{i}", "business_id": rnd.choice(businesses),
                          "created_at": jst + timedelta(hours=rnd.choice([-2, 2, 24 * 200]))} for i in range(30)]

        async def consult(doc: dict) -> None:
            await db.consultations.insert_one(doc)
            await c.on_consultation(doc)
        await in_batches([consult(x) for x in consultations])
        paid = [d for d in dispatches if d["status"] == "paid"]
        surveys = [{"_id": f"{d['_id']}:{m}", "dispatch_id": d["_id"], "business_id": d["business_id"],
                    "fiscal_year": d["fiscal_year"], "block": d["platform_id"][3:] if d["platform_id"] != "pf-late"
                    else None, "answered_at": None} for d in paid for m in (3, 12)]

        async def survey(s: dict) -> None:
            await db.outcome_surveys.insert_one(s)
            await c.on_survey(s)
        await in_batches([survey(s) for s in surveys])
        while await c.sweep():   # whatever a busy membership left
            pass
        assert await check_equal(c, db) > 0

        # changes: statuses move on (as batches of events: every business of a batch recounted together, two batches
        # at once), industries change, the late platform's block is learnt, surveys are answered
        for d in rnd.sample(dispatches, 40):
            d["status"] = "paid"
        await in_batches([db.worklist.update_one({"_id": d["_id"]}, {"$set": d}, upsert=True) for d in dispatches])
        items = [(None, SimpleNamespace(dispatch_id=d["_id"], business_id=d["business_id"])) for d in dispatches]
        await in_batches([c.on_dispatches(items[i:i + 40]) for i in range(0, len(items), 40)], size=2)
        for b in rnd.sample(businesses[:-3], 8):
            await db.businesses.update_one({"_id": b}, {"$set": {"industry": "情報通信業"}})
            await c.touch(b)
        await db.platforms.insert_one({"_id": "pf-late", "bureau_id": "kanto"})
        await c.on_platform(None, SimpleNamespace(platform_id="pf-late"))
        for s in rnd.sample(surveys, len(surveys) // 2):
            s.update(answered_at=datetime.now(UTC), results=rnd.random() < 0.5)
            await db.outcome_surveys.update_one({"_id": s["_id"]}, {"$set": s})
            await c.on_survey(s)
        # a consultation written, its copy not (a crash between the two): the mark asks the sweep to copy again
        late = {"_id": "c-late", "business_id": businesses[0], "created_at": jst}
        await c.mark(late["business_id"], refresh=True)
        await db.consultations.insert_one(late)
        while await c.sweep():
            pass
        await check_equal(c, db)
        await check_equal(c, db, P5)

        # redelivered and concurrent triggers change nothing
        before = [d async for d in db.ebpm_counters.find({}, {"_seen": 0}).sort("_id", 1)]
        await in_batches([c.touch(b) for b in businesses * 3], size=24)
        while await c.sweep():
            pass
        assert [d async for d in db.ebpm_counters.find({}, {"_seen": 0}).sort("_id", 1)] == before
        assert await db.ebpm_businesses.count_documents({"pending": {"$exists": True}}) == 0

        # a crash half-way through a recount: the counter moved, the membership not marked. The next recount of
        # the business, once the claim is stale, finishes it without moving the counter twice.
        victim = dispatches[0]["business_id"]
        await db.businesses.update_one({"_id": victim}, {"$set": {"industry": "運輸業"}}, upsert=True)

        class Crash(Exception):
            pass
        crashing = Counters(db, params)
        real = crashing.businesses.update_one

        async def crash_on_mark(filt, update, *a, **kw):
            if "pending.op" in filt and "$unset" in update:
                raise Crash()
            return await real(filt, update, *a, **kw)
        crashing.businesses = type("B", (), {"__getattr__": lambda self, n: getattr(db.ebpm_businesses, n),
                                             "update_one": staticmethod(crash_on_mark)})()
        with pytest.raises(Crash):
            await crashing.touch(victim)
        assert not await c.touch(victim)     # a fresh claim: another recount may still be on it
        assert await db.ebpm_businesses.count_documents({"_id": victim, "pending": {"$exists": True}}) == 1
        await db.ebpm_businesses.update_one({"_id": victim},
                                            {"$set": {"pending.at": datetime.now(UTC) - timedelta(minutes=10)}})
        assert await c.sweep() >= 1
        await check_equal(c, db)

        # a batch recount crashing after it moved the first counter document for all its businesses: each business's
        # claim, taken over once stale, moves only the documents that have not seen its op
        moved = [d for d in dispatches if d["business_id"] in businesses[:12]]
        for d in moved:
            d["status"] = "closed" if d["status"] == "paid" else "paid"
            await db.worklist.update_one({"_id": d["_id"]}, {"$set": d})
        crashing = Counters(db, params)
        real_move = crashing._move

        async def crash_after_first(*a, **kw):
            await real_move(*a, **kw)
            raise Crash()
        crashing._move = crash_after_first
        batch = [(None, SimpleNamespace(dispatch_id=d["_id"], business_id=d["business_id"])) for d in moved]
        with pytest.raises(Crash):
            await crashing.on_dispatches(batch)
        stuck = await db.ebpm_businesses.count_documents({"pending": {"$exists": True}})
        assert stuck > 1
        await c.on_dispatches(batch)     # redelivered at once: the claims are fresh, so the businesses are marked
        assert await db.ebpm_dirty.count_documents({}) == stuck
        await db.ebpm_businesses.update_many({"pending": {"$exists": True}},
                                             {"$set": {"pending.at": datetime.now(UTC) - timedelta(minutes=10)}})
        while await c.sweep():
            pass
        assert await db.ebpm_businesses.count_documents({"pending": {"$exists": True}}) == 0
        await check_equal(c, db)
    finally:
        await client.close()


@pytest.mark.timeout(300)
async def test_R_OPS_03_existing_rows_are_counted_once_by_the_start_up_backfill(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    try:
        db = client[ns.db("dispatch") + "_backfill"]
        await db.businesses.insert_many([{"_id": f"b{i}", "industry": "製造業"} for i in range(8)])
        await db.platforms.insert_one({"_id": "pf", "bureau_id": "kanto"})
        await db.worklist.insert_many([{"_id": f"d{i}", "business_id": f"b{i % 8}", "fiscal_year": 2026,
                                        "platform_id": "pf", "status": "paid"} for i in range(20)])
        c = Counters(db, params)
        # another replica already running copied one dispatch of b0 from its trigger before this start
        await c.businesses.insert_one({"_id": "b0", "rows": {"d": {"d0": {"id": "d0", "fiscal_year": 2026,
                                                                          "platform_id": "pf", "status": "paid"}}}})
        await c.setup()                   # rows from before the counters: marked once
        assert await db.ebpm_dirty.count_documents({}) == 8
        assert (await db.ebpm_dirty.find_one({"_id": "b0"}))["refresh"]   # copied again from the sources
        await Counters(db, params).setup()  # a second start (or replica) marks nothing again
        while await c.sweep():
            pass
        assert await db.ebpm_dirty.count_documents({}) == 0
        await check_equal(c, db)
    finally:
        await client.drop_database(ns.db("dispatch") + "_backfill")
        await client.close()
