"""R-EXT-02: a DPoP proof is taken once across every replica of a service, not once per process.

Two caches on one collection stand for two replicas behind a load balancer: the second sees the first's proof."""
from __future__ import annotations

import asyncio
import time

from pymongo import AsyncMongoClient

from servicekit import dpop


async def test_R_EXT_02_a_proof_replayed_to_another_replica_is_refused(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    col = client[ns.db("dpop")].dpop_proofs
    replica_a, replica_b, now = dpop.ReplayCache(col), dpop.ReplayCache(col), time.time()
    try:
        assert await replica_a.first_use("jkt:proof-1", now)
        assert not await replica_b.first_use("jkt:proof-1", now + 1), "a replay on the other replica"
        assert not await replica_a.first_use("jkt:proof-1", now + 2), "a replay on the same replica"
        # many replicas racing with the same proof: exactly one takes it
        racers = [dpop.ReplayCache(col) for _ in range(10)]
        won = await asyncio.gather(*(r.first_use("jkt:proof-2", now) for r in racers))
        assert won.count(True) == 1
    finally:
        await client.close()


async def test_R_EXT_02_entries_past_the_proof_window_are_pruned(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    col = client[ns.db("dpop")].dpop_proofs
    cache, now = dpop.ReplayCache(col, prune_every=3), time.time()
    try:
        assert await cache.first_use("jkt:old-1", now) and await cache.first_use("jkt:old-2", now)
        later = now + 2 * dpop.MAX_AGE + 5  # both are older than any proof whose iat would still pass
        assert await cache.first_use("jkt:new", later)  # the third insert prunes
        assert {d["_id"] async for d in col.find({})} == {"jkt:new"}
    finally:
        await client.close()
