"""The local MongoDB-wire server's backends on the project's own write mix: FerretDB 1.24 on SQLite (the default)
against FerretDB 1.24 on PostgreSQL (Debian's postgresql package), same binary, same patches, same run.

The mix is what the services do (servicekit.store, outbox, consumers), on a collection pre-filled with `--docs`
documents so that anything proportional to the collection's size shows:
- insert an aggregate with its outbox entry (`Service.insert`)
- an idempotent consumer's update by `_id` guarded by `_seen` (`apply_once`: $set + $push/$slice)
- the relay clearing an outbox entry (`$pullAll` by `_id`)
- a lookup by `_id` (every request)
- `$inc` on one hot document from 16 writers (a budget frame, a peer group)
- `insert_many` of 1,000 documents (bulk import)

    uv run --frozen python bench/store_backends.py --uri sqlite=mongodb://127.0.0.1:27017 --uri postgresql=mongodb://127.0.0.1:27018

The PostgreSQL side as measured (Debian's postgresql 15, which refuses to run as root; the FerretDB binary mongo.sh
built): `su postgres -c "initdb -D DIR -U postgres --auth=trust && pg_ctl -D DIR -o '-p 24432 -k DIR' start"`,
`createdb -h 127.0.0.1 -p 24432 -U postgres ferretdb`, then `ferretdb --handler=postgresql
--postgresql-url=postgres://postgres@127.0.0.1:24432/ferretdb --listen-addr=127.0.0.1:27018 --telemetry=disable`.
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from pymongo import AsyncMongoClient


async def timed(n: int, concurrency: int, op) -> float:
    """ops/s of `op(i)` for i in range(n), `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            await op(i)
    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t)


async def mix(uri: str, docs: int, n: int) -> dict[str, float]:
    client = AsyncMongoClient(uri)
    db = client[f"bench_backends_{uuid.uuid4().hex[:6]}"]
    col = db.aggregates
    out: dict[str, float] = {}
    try:
        t = time.perf_counter()
        for i in range(0, docs, 1000):
            await col.insert_many([{"_id": f"a{j:07d}", "v": 1, "state": "x" * 200, "_seen": [], "_outbox": []}
                                   for j in range(i, min(i + 1000, docs))])
        out["insert_many 1,000 docs (docs/s)"] = docs / (time.perf_counter() - t)
        entry = {"event_id": "e", "topic": "t", "key": "k", "value": "{" + "x" * 300 + "}"}
        out["insert aggregate + outbox"] = await timed(n, 16, lambda i: col.insert_one(
            {"_id": f"n{i:07d}", "v": 1, "state": "y" * 200, "_outbox": [{**entry, "event_id": f"e{i}"}]}))
        out["find_one by _id"] = await timed(n, 16, lambda i: col.find_one({"_id": f"a{(i * 7919) % docs:07d}"}))
        out["apply_once update by _id"] = await timed(n, 16, lambda i: col.update_one(
            {"_id": f"a{(i * 7919) % docs:07d}", "_seen": {"$ne": f"ev{i}"}},
            {"$set": {"state": f"s{i}"}, "$push": {"_seen": {"$each": [f"ev{i}"], "$slice": -50}}}))
        out["outbox clear ($pullAll by _id)"] = await timed(n, 16, lambda i: col.update_one(
            {"_id": f"n{i:07d}"}, {"$pullAll": {"_outbox": [{**entry, "event_id": f"e{i}"}]}}))
        await col.insert_one({"_id": "hot", "n": 0})
        out["$inc one hot document, 16 writers"] = await timed(n, 16, lambda i: col.update_one({"_id": "hot"}, {"$inc": {"n": 1}}))
        hot = await col.find_one({"_id": "hot"})
        assert hot["n"] == n, f"lost updates on {uri}: {hot['n']} of {n}"
        left = await col.count_documents({"_outbox.0": {"$exists": True}})
        assert left == 0, f"{left} outbox entries not cleared on {uri}"
    finally:
        await client.drop_database(db.name)
        await client.close()
    return out


async def main(uris: list[tuple[str, str]], docs: int, n: int) -> None:
    results = {name: await mix(uri, docs, n) for name, uri in uris}
    names = [name for name, _ in uris]
    print(f"\n{'operation (ops/s; collection of ' + format(docs, ',') + ' documents)':58s}" + "".join(f"{x:>14s}" for x in names))
    for op in next(iter(results.values())):
        print(f"{op:58s}" + "".join(f"{results[x][op]:14,.0f}" for x in names))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", action="append", required=True, help="name=mongodb://… (repeat)")
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--ops", type=int, default=2_000)
    a = ap.parse_args()
    asyncio.run(main([tuple(u.split("=", 1)) for u in a.uri], a.docs, a.ops))
