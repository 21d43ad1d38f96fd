"""R-REC-08: the outcome KPI is read from counters kept with each survey's write, not by scanning the surveys. On the
real MongoDB-wire server: many surveys scheduled and answered (concurrently, a business with several dispatches, an
answer sent twice, the counting repeated and interrupted half-way), then the counters must equal a recount from the
survey rows in every grouping and scope; the KPI read time of both ways is printed for the same data."""
from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pymongo import AsyncMongoClient

from dispatch_service.domain.outcomes import GROUPINGS, OutcomeParams, kpi, kpi_of_counts
from dispatch_service.outcomes import Outcomes

N = 240
P = OutcomeParams(min_cell=1)  # every group shows its figures, so every figure is compared


async def schedule(o: Outcomes, s: dict) -> None:
    """A survey as `Outcomes.on_status` schedules it, then counted."""
    await o.col.update_one({"_id": s["_id"]}, {"$setOnInsert": {**s, "answered_at": None, "tally": "pending",
                                                                "tally_rev": 1}}, upsert=True)
    await o.tally(s["_id"])


async def in_batches(coros, size: int = 16) -> list:
    out = []
    for i in range(0, len(coros), size):
        out += await asyncio.gather(*coros[i:i + size])
    return out


async def check_equal(o: Outcomes, blocks, years) -> None:
    for fy in (None, *years):
        all_rows = await o.rows(fy)
        for by in GROUPINGS:
            for block in (None, *blocks):
                rows = [r for r in all_rows if block is None or r["block"] == block]
                assert kpi_of_counts(await o.counts(by, fy, block), by, P) == kpi(rows, by, P), (by, fy, block)


@pytest.mark.timeout(600)
async def test_R_REC_08_counters_equal_a_recount_from_the_surveys_after_many_answers(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    try:
        o = Outcomes(SimpleNamespace(db=client[ns.db("dispatch")]), P)
        await o.setup()
        rnd = random.Random(21)
        blocks, years = ["kyushu", "kanto", "tohoku"], [2025, 2026]
        surveys = []
        for i in range(N // 2):  # two waves per dispatch
            base = {"dispatch_id": f"d{i}", "business_id": f"b{rnd.randrange(N // 5)}", "fiscal_year": rnd.choice(years),
                    "block": rnd.choice(blocks), "field": rnd.choice(["it_dx", "tax", "finance", None]),
                    "expert_id": f"ex-{rnd.randrange(12)}", "months": 0, "due_at": datetime.now(UTC)}
            surveys += [{**base, "_id": f"d{i}:3", "months": 3}, {**base, "_id": f"d{i}:12", "months": 12}]
        await in_batches([schedule(o, s) for s in surveys])
        await in_batches([schedule(o, s) for s in surveys[:40]])  # PAID redelivered: scheduled again, no change

        answered = [s for s in surveys if rnd.random() < 0.6]
        results = {s["_id"]: rnd.random() < 0.6 for s in answered}
        got = await in_batches([o.answer(s["_id"], by="acct", answer={"results_achieved": results[s["_id"]]},
                                         results=results[s["_id"]]) for s in answered])
        assert all(got)
        # the same answer sent again is refused and counted once
        again = await in_batches([o.answer(s["_id"], by="acct", answer={}, results=True) for s in answered[:30]])
        assert not any(again)
        await check_equal(o, blocks, years)

        # counting repeated: every survey marked pending again (a redelivery, the start-up backfill)
        await o.col.update_many({}, {"$set": {"tally": "pending"}, "$inc": {"tally_rev": 1}})
        while await o.tally_pending():
            pass
        await check_equal(o, blocks, years)

        # a crash half-way, both ways, left claims behind (older than `stale_claim`): (a) after raising the counter,
        # before marking the membership counted; (b) after claiming, before raising. The next tally finishes both,
        # each raise once.
        old = datetime.now(UTC) - timedelta(hours=1)
        members = [m async for m in o.members.find({"answered": True}).limit(40)]
        for i, m in enumerate(members):
            scope, group, _business = m["_id"].rsplit("|", 2)
            op = f"{m['_id']}:answered"
            await o.members.update_one({"_id": m["_id"]}, {"$set": {"counted_answered": old}})
            if i % 2:  # (a): the counter still holds the op id
                await o.counters.update_one({"_id": scope}, {"$push": {"_seen": op}})
            else:  # (b): the counter was never raised
                await o.counters.update_one({"_id": scope}, {"$inc": {f"groups.{group}.answered": -1}})
        await o.col.update_many({}, {"$set": {"tally": "pending"}, "$inc": {"tally_rev": 1}})
        while await o.tally_pending():
            pass
        assert await o.col.count_documents({"tally": "pending"}) == 0
        await check_equal(o, blocks, years)
        assert await o.counters.count_documents({"_seen.0": {"$exists": True}}) == 0  # op ids do not pile up

        # the figure: a KPI read by counters against the old scan of every survey, on the same data
        reps = 5
        t0 = time.perf_counter()
        for _ in range(reps):
            kpi_of_counts(await o.counts("expert_id", 2026, None), "expert_id", P)
        counters_ms = (time.perf_counter() - t0) * 1000 / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            kpi(await o.rows(2026), "expert_id", P)
        scan_ms = (time.perf_counter() - t0) * 1000 / reps
        groups = len(await o.counts("expert_id", 2026, None))
        print(f"\nR-REC-08 KPI read over {len(surveys)} surveys ({groups} groups, by expert, one fiscal year): "
              f"counters {counters_ms:.1f} ms, scan of the surveys {scan_ms:.1f} ms")
    finally:
        await client.close()
