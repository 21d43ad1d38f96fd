"""The MongoDB guarantees the services build on hold on the server the tests run against.

The outbox-inside-the-aggregate, `apply_once` and the budget frame's compare-and-set all need one
thing: a single-document write is atomic, even when many clients write the same document at once.
(The local FerretDB is patched for this; see deploy/local/ferretdb-atomic.go.)
"""
from __future__ import annotations

import asyncio
import re

from pymongo import AsyncMongoClient, UpdateOne

WRITERS = 40


async def test_concurrent_updates_of_one_document_are_all_kept(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    col = client[ns.db("semantics")].docs
    await col.insert_one({"_id": "d", "n": 0, "log": []})

    async def bump(i: int):
        await col.update_one({"_id": "d"}, {"$inc": {"n": 1}, "$push": {"log": i}})

    await asyncio.gather(*(bump(i) for i in range(WRITERS)))
    doc = await col.find_one({"_id": "d"})
    await client.close()
    assert doc["n"] == WRITERS and sorted(doc["log"]) == list(range(WRITERS))


async def test_compare_and_set_on_a_version_succeeds_exactly_once(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    col = client[ns.db("semantics")].docs
    await col.insert_one({"_id": "f", "version": 0, "winner": None})

    async def claim(i: int) -> int:
        res = await col.update_one({"_id": "f", "version": 0}, {"$set": {"version": 1, "winner": i}})
        return res.modified_count

    wins = await asyncio.gather(*(claim(i) for i in range(WRITERS)))
    await client.close()
    assert sum(wins) == 1


async def test_deletes_and_updates_of_one_collection_do_not_block_each_other(infra, ns):
    """A delete_many among concurrent updates answers (an earlier patch of the local server hung here)."""
    client = AsyncMongoClient(infra.mongo, socketTimeoutMS=20000)
    col = client[ns.db("semantics")].docs
    await col.insert_many([{"_id": i, "odd": i % 2, "n": 0} for i in range(WRITERS)])
    results = await asyncio.gather(col.delete_many({"odd": 1}),
                                   *(col.update_one({"_id": i}, {"$inc": {"n": 1}}) for i in range(0, WRITERS, 2)))
    left = await col.find({}).to_list(None)
    await client.close()
    assert results[0].deleted_count == WRITERS // 2
    assert sorted(d["_id"] for d in left) == list(range(0, WRITERS, 2)) and all(d["n"] == 1 for d in left)



async def test_a_bulk_write_of_more_statements_than_the_pool_has_connections_completes(infra, ns):
    """The batched consumers and the relay clear hundreds of documents in one bulk write (one update command of
    many statements). FerretDB 1.24 held every statement's query open until the command ended, so a command of
    more than 100 statements waited forever for a connection of SQLite's pool, and the server hung for every
    client (mongo.sh patches it)."""
    client = AsyncMongoClient(infra.mongo, socketTimeoutMS=20000)
    col = client[ns.db("semantics")].bulk
    n = 250
    await col.insert_many([{"_id": i, "n": 0} for i in range(n)])
    ops = [UpdateOne({"_id": i}, {"$inc": {"n": 1}}) for i in range(n)]
    ops += [UpdateOne({"_id": f"new-{i}"}, {"$setOnInsert": {"n": 1}}, upsert=True) for i in range(n)]
    res = await asyncio.wait_for(col.bulk_write(ops, ordered=False), 30)
    after = await asyncio.wait_for(col.count_documents({"n": 1}), 10)  # the server still answers
    await client.close()
    assert (res.modified_count, res.upserted_count, after) == (n, n, 2 * n)


async def test_lookups_by_id_use_the_id_index(infra, ns):
    """Every aggregate is read and written by `_id` (a compare-and-set adds a field to that filter), so
    those lookups must use the `_id` index, or each write scans the whole collection (FerretDB 1.24 did:
    see mongo.sh). Checked on the query plan, not on timings: FerretDB shows its backend's plan (SQLite:
    "SEARCH ... USING INDEX" vs "SCAN ...", PostgreSQL: "Index Scan" vs "Seq Scan"), MongoDB its stages
    (IDHACK / EXPRESS / IXSCAN vs COLLSCAN). A batch reads its documents with `_id: {$in: [...]}`, also from the
    index (patched in on SQLite)."""
    client = AsyncMongoClient(infra.mongo)
    db = client[ns.db("semantics")]
    await db.plans.insert_many([{"_id": f"d{i}", "v": 1} for i in range(50)])
    plans = [repr((await db.command("explain", {"find": "plans", "filter": f}))["queryPlanner"])
             for f in ({"_id": "d7"}, {"_id": "d7", "v": 1}, {"_id": {"$in": ["d7", "d9"]}})]
    await client.close()
    if "Index Scan" in plans[0]:  # FerretDB on PostgreSQL: its `$in` is not patched (mongo.sh), MongoDB's IXSCAN is
        plans = plans[:2]
    for text in plans:
        assert re.search(r"USING INDEX|Index Scan|IDHACK|EXPRESS|IXSCAN", text), text
        assert not re.search(r"COLLSCAN|detail=SCAN |Seq Scan", text), text


PREFILTER_DOCS = [
    {"_id": 1, "s": "open", "tags": ["a", "b"], "box": [{"e": 1}], "n": None},
    {"_id": 2, "s": "paid", "tags": [], "box": []},
    {"_id": 3, "s": ["open", "x"], "tags": "a", "box": {"0": "key"}},
    {"_id": 4, "s": 7, "tags": ["b"], "box": {"1": "other"}},
    {"_id": 5, "s": {"open": 1}, "box": "text"},
    {"_id": 6, "s": "ÖPEN 'q'", "tags": ["a"]},
    {"_id": 7, "box": [None]},
]


async def test_queries_the_local_server_prefilters_in_sqlite_match_as_on_mongodb(infra, ns):
    """The local server hands SQLite top-level string equality, `$in` of strings and `$exists` as a prefilter
    (deploy/local/ferretdb-prefilter.go): the results are MongoDB's, arrays holding the value, null, an object with
    the key "0" and fields beside the pushed-down ones included, through find, count, aggregate, update and delete."""
    client = AsyncMongoClient(infra.mongo)
    col = client[ns.db("semantics")].prefilter
    await col.insert_many(PREFILTER_DOCS)

    async def ids(filter_: dict) -> list:
        found = sorted([d["_id"] async for d in col.find(filter_, {"_id": 1})])
        assert await col.count_documents(filter_) == len(found)
        grouped = sorted([d["_id"] async for d in await col.aggregate([{"$match": filter_}, {"$project": {"_id": 1}}])])
        assert grouped == found
        return found

    assert await ids({"s": "open"}) == [1, 3]
    assert await ids({"s": {"$in": ["paid", "open"]}}) == [1, 2, 3]
    assert await ids({"s": {"$in": ["ÖPEN 'q'"]}}) == [6]
    assert await ids({"tags": "a"}) == [1, 3, 6]
    assert await ids({"tags": {"$in": ["a", "zz"]}}) == [1, 3, 6]
    assert await ids({"n": {"$exists": True}}) == [1]
    assert await ids({"tags": {"$exists": True}}) == [1, 2, 3, 4, 6]
    assert await ids({"box.0": {"$exists": True}}) == [1, 3, 7]
    assert await ids({"box.0": {"$exists": True}, "s": "open"}) == [1, 3]
    assert await ids({"s": "open", "tags": {"$size": 2}}) == [1]
    assert await ids({"s": {"$in": ["open", None]}}) == [1, 3, 7]  # null: left to FerretDB (missing fields match)
    assert await ids({"box.1": {"$exists": True}}) == [4]  # not pushed down
    res = await col.update_many({"box.0": {"$exists": True}, "s": {"$in": ["open"]}}, {"$set": {"hit": True}})
    assert res.modified_count == 2
    assert await ids({"hit": {"$exists": True}}) == [1, 3]
    assert (await col.delete_many({"tags": "a"})).deleted_count == 3
    assert await ids({}) == [2, 4, 5, 7]
    await client.close()
