"""servicekit.aggregate on the real MongoDB-wire server: many concurrent read → decide → compare-and-set updates of one
document all land exactly once (none lost, none doubled), events ride in the same write, changes without events
are audited, and documents versioned the old way (`_rev`, `v`) are taken over as `version`."""
from __future__ import annotations

import asyncio

from pymongo import AsyncMongoClient

from servicekit import aggregate
from servicekit.aggregate import Change
from servicekit.store import with_outbox

WRITERS = 20


class Svc:
    """What the helper needs of a Service: its database and the outbox-carrying write and insert."""

    def __init__(self, db):
        self.db = db

    def nothing_to_publish(self, outbox):  # as a Service whose relay has published nothing yet
        return outbox == []

    async def write(self, col, filter_, update, *, events=(), upsert=False, outbox_was_empty=False):
        return await col.update_one(filter_, with_outbox(update, list(events)), upsert=upsert)

    async def insert(self, col, doc, *, events=()):
        return await col.insert_one({**doc, "_outbox": list(events)})


def entry(i: int) -> dict:
    return {"event_id": f"e{i}", "topic": "t", "key": "k", "value": "{}", "trace": {}}


async def test_concurrent_updates_through_the_helper_are_each_applied_once(infra, ns):
    client = AsyncMongoClient(infra.mongo, tz_aware=True)
    svc = Svc(client[ns.db("aggregate")])
    col = svc.db.things
    await col.insert_one({"_id": "a", "version": 1, "log": []})

    async def one(i: int):
        return await aggregate.update(svc, col, "a", lambda d: Change(set={"log": d["log"] + [i]}, events=[entry(i)]),
                                      actor="u", action="thing.changed", attempts=200)

    await asyncio.gather(*(one(i) for i in range(WRITERS)))
    doc = await col.find_one({"_id": "a"})
    await client.close()
    assert sorted(doc["log"]) == list(range(WRITERS)) and doc["version"] == WRITERS + 1
    assert sorted(e["event_id"] for e in doc["_outbox"]) == sorted(f"e{i}" for i in range(WRITERS))


async def test_R_OPS_02_a_change_without_events_is_audited_and_old_versions_are_taken_over(infra, ns):
    client = AsyncMongoClient(infra.mongo, tz_aware=True)
    svc = Svc(client[ns.db("aggregate")])
    col = svc.db.things
    await col.insert_many([{"_id": "old-rev", "_rev": 4}, {"_id": "old-v", "v": 9}, {"_id": "none"}])
    for doc_id in ("old-rev", "old-v", "none"):
        out = await aggregate.update(svc, col, doc_id, lambda d: Change(set={"read_at": aggregate.version_of(d)}),
                                     actor="u", action="thing.changed")
        assert out.changed
    got = {d["_id"]: d async for d in col.find({})}
    audit = [a async for a in svc.db.audit.find({"key": {"$in": ["old-rev", "old-v", "none"]}})]
    await client.close()
    assert got == {"old-rev": {"_id": "old-rev", "read_at": 4, "version": 5},
                   "old-v": {"_id": "old-v", "read_at": 9, "version": 10},
                   "none": {"_id": "none", "read_at": 0, "version": 1}}
    assert len(audit) == 3 and all(a["at"].tzinfo is not None and a["action"] == "thing.changed" for a in audit)
