"""Dispatch's read indexes, read by `_id` instead of a filter that scans on the local server.

R-DSP-15: the repeated-pair signal reads the pair's dispatches by `_id` from the pair's index document, on the real
MongoDB-wire server: dispatches written before the index existed are found through the start-up backfill, later ones
through their ACCEPTED events (the pair read and added to in one command); a refused dispatch, another business's
and another expert's never count. R-DSP-12: a business's pending ratings are read through its owed index."""
from __future__ import annotations

from types import SimpleNamespace

from pymongo import AsyncMongoClient

from contracts.events.dispatch import DispatchStatus as S
from dispatch_service.domain.integrity import IntegrityParams
from dispatch_service.integrity import Integrity
from servicekit.reads import ByIds


def dispatch(i: int, status: str, business: str = "biz-1", expert: str = "ex-1", fy: int = 2026) -> dict:
    return {"_id": f"d{i}", "expert_id": expert, "business_id": business, "status": status, "fiscal_year": fy,
            "route": "A"}


async def test_R_DSP_15_repeated_pair_counts_the_pairs_dispatches_through_the_pair_index(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    db = client[ns.db("dispatch") + "_pairs"]
    try:
        async def get(dispatch_id):
            return await db.dispatches.find_one({"_id": dispatch_id})
        signals = Integrity(SimpleNamespace(db=db, dispatches=db.dispatches, get=get), IntegrityParams(pair_cap=3))
        before = [dispatch(1, "paid", fy=2025), dispatch(2, "approved"), dispatch(3, "refused"),
                  dispatch(4, "paid", business="biz-2"), dispatch(5, "paid", expert="ex-2")]
        await db.dispatches.insert_many(before)
        await signals.setup()           # the dispatches from before the index: indexed once
        await signals.setup()           # a second start adds nothing
        assert await db.dispatch_pairs.find_one({"_id": "ex-1|biz-1"}) == {"_id": "ex-1|biz-1", "ids": ["d1", "d2"]}

        async def accepted(d: dict) -> None:
            await db.dispatches.insert_one(d)
            await signals.on_status(SimpleNamespace(event_id=f"ev-{d['_id']}"),
                                    SimpleNamespace(status=S.ACCEPTED, dispatch_id=d["_id"], expert_id=d["expert_id"],
                                                    business_id=d["business_id"], fiscal_year=d["fiscal_year"]))
        await accepted(dispatch(6, "accepted"))
        assert await db.integrity_flags.count_documents({}) == 0        # three counting dispatches: at the cap
        await accepted(dispatch(7, "accepted"))
        flags = [f async for f in db.integrity_flags.find({})]
        assert [(f["code"], f["dispatch_id"]) for f in flags] == [("repeated_pair", "d7")]
        assert flags[0]["evidence"]["dispatch_ids"] == ["d1", "d2", "d6", "d7"]
        await accepted(dispatch(8, "accepted", business="biz-2"))      # another pair: two dispatches, no flag
        assert await db.integrity_flags.count_documents({}) == 1
        # a rating of the pair's first dispatch, given after the later ones: all of the pair's dispatches count
        await db.experts.insert_one({"_id": "ex-1", "related_business_ids": []})
        await signals.on_rating(SimpleNamespace(event_id="ev-rated"), SimpleNamespace(rater_kind="business",
                                                                                     dispatch_id="d2"))
        rated = await db.integrity_flags.find_one({"code": "network_rating"})
        assert rated["dispatch_id"] == "d2" and rated["evidence"]["pair_dispatches"] == 4
    finally:
        await client.drop_database(ns.db("dispatch") + "_pairs")
        await client.close()


async def test_R_DSP_15_a_batch_of_accepted_dispatches_is_weighed_as_one_at_a_time(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    db = client[ns.db("dispatch") + "_pairs_batch"]
    try:
        signals = Integrity(SimpleNamespace(db=db, dispatches=db.dispatches), IntegrityParams(pair_cap=3))
        await db.dispatches.insert_many([dispatch(1, "paid"), dispatch(2, "approved")])
        await signals.setup()

        def event(d: dict):
            return (SimpleNamespace(event_id=f"ev-{d['_id']}"),
                    SimpleNamespace(status=S.ACCEPTED, dispatch_id=d["_id"], expert_id=d["expert_id"],
                                    business_id=d["business_id"], fiscal_year=d["fiscal_year"]))
        batch = [dispatch(3, "accepted"), dispatch(4, "accepted"), dispatch(5, "accepted", business="biz-2")]
        await db.dispatches.insert_many(batch)
        reads = []
        real_find = db.dispatch_pairs.find
        signals.db = SimpleNamespace(dispatch_pairs=db.dispatch_pairs, integrity_flags=db.integrity_flags)
        signals.db.dispatch_pairs.find = lambda *a, **kw: reads.append(a) or real_find(*a, **kw)
        await signals.on_accepted([event(d) for d in batch])
        assert len(reads) == 1                                       # the batch's pairs read back together
        assert await db.dispatch_pairs.find_one({"_id": "ex-1|biz-1"}) == {"_id": "ex-1|biz-1",
                                                                          "ids": ["d1", "d2", "d3", "d4"]}
        flags = [f async for f in db.integrity_flags.find({})]
        # d3 was the third of its pair when it was accepted (at the cap), d4 the fourth: only d4, as one at a time
        assert [(f["code"], f["dispatch_id"]) for f in flags] == [("repeated_pair", "d4")]
        assert flags[0]["evidence"]["dispatch_ids"] == ["d1", "d2", "d3", "d4"]
        await signals.on_accepted([event(d) for d in batch])        # redelivered: nothing new
        assert await db.integrity_flags.count_documents({}) == 1
        assert (await db.dispatch_pairs.find_one({"_id": "ex-1|biz-1"}))["ids"] == ["d1", "d2", "d3", "d4"]
    finally:
        await client.drop_database(ns.db("dispatch") + "_pairs_batch")
        await client.close()


async def test_R_DSP_12_pending_ratings_are_read_through_the_business_owed_index(infra, ns):
    from dispatch_service.store import Store
    client = AsyncMongoClient(infra.mongo)
    db = client[ns.db("dispatch") + "_owed"]
    try:
        await db.pending_ratings.insert_many([   # owed before the index existed
            {"_id": "owed-1", "business_id": "biz-1", "rater_kind": "business", "given": False},
            {"_id": "owed-2", "business_id": "biz-1", "rater_kind": "business", "given": True},
            {"_id": "owed-3", "business_id": "biz-1", "rater_kind": "expert", "given": False},
            {"_id": "owed-4", "business_id": "biz-2", "rater_kind": "business", "given": False}])
        store = Store(SimpleNamespace(db=db, by_ids=lambda col, projection=None: ByIds(db[col], projection)))
        assert await store.backfill_owed_index() == 2
        assert await store.backfill_owed_index() == 0       # once per database
        assert await store.pending_ratings("biz-1") == 1
        await store.rating_owed({"_id": "d9", "business_id": "biz-1", "expert_id": "ex-1"})   # confirmed now
        assert await store.pending_ratings("biz-1") == 2
        await store.rating_owed({"_id": "d9", "business_id": "biz-1", "expert_id": "ex-1"})   # again: nothing new
        assert await store.pending_ratings("biz-1") == 2
        await db.pending_ratings.update_many({"business_id": "biz-1"}, {"$set": {"given": True}})
        assert await store.pending_ratings("biz-1") == 0
        assert await store.pending_ratings("biz-2") == 1 and await store.pending_ratings("biz-3") == 0
    finally:
        await client.drop_database(ns.db("dispatch") + "_owed")
        await client.close()
