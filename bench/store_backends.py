"""The local MongoDB-wire server's backends on the project's own write mix: FerretDB 1.24 on SQLite (the default)
against FerretDB 1.24 on PostgreSQL (Debian's postgresql package), same binary, same patches, same run.

The mix is what the services do (servicekit.store, servicekit.aggregate, the outbox relay, consumers), on a
collection pre-filled with `--docs` documents so that anything proportional to the collection's size shows:
- `insert_many` of 1,000 documents at a time (bulk import; the pre-fill, docs/s)
- insert of an aggregate with its outbox entry (`Service.insert`)
- lookup by `_id` (every request, and the read before each aggregate write)
- the aggregate write: compare-and-set on `v` with `$inc v`, `$set` state and `$push` of an outbox entry
- the relay clearing that entry (`$pullAll` by `_id`)
- an idempotent consumer's upsert guarded by `_seen` (`apply_once`: `$set` + `$push $each $slice`)
- an audit row (`record_audit`: insert with a time-ordered `_id`)
- a cursor page of 50 by `_id` range (`{_id: {$gt: last}}`, sorted by `_id`)
- `$inc` on one hot document from every writer at once (a budget frame, a peer group; lost updates asserted)
each at every `--concurrency`, printing ops/s, p50 and p99 per operation and backend, and the ratio of the
second backend to the first (ops/s; > 1 means the second is faster).

Both servers as `mongo.sh` runs them (two VAR_DIRs, so two pid files):

    VAR_DIR=var/bench-sqlite MONGO_PORT=27117 deploy/local/mongo.sh start
    VAR_DIR=var/bench-pg MONGO_PORT=27118 MONGO_BACKEND=postgresql MONGO_PG_PORT=15433 deploy/local/mongo.sh start
    uv run --frozen python bench/store_backends.py --uri sqlite=mongodb://127.0.0.1:27117 \\
        --uri postgresql=mongodb://127.0.0.1:27118
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

ENTRY = {"event_id": "e", "topic": "t", "key": "k", "value": "{" + "x" * 300 + "}"}


async def timed(n: int, concurrency: int, op) -> dict[str, float]:
    """ops/s, p50 and p99 (ms) of `op(i)` for i in range(n), `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []

    async def one(i):
        async with sem:
            t0 = time.perf_counter()
            await op(i)
            lat.append(time.perf_counter() - t0)
    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"ops": n / wall, "p50": q[49] * 1000, "p99": q[98] * 1000}


async def mix(uri: str, docs: int, n: int, concurrencies: list[int]) -> dict[tuple[str, int], dict[str, float]]:
    client = AsyncMongoClient(uri, maxPoolSize=max(concurrencies) + 4)
    db = client[f"bench_backends_{uuid.uuid4().hex[:6]}"]
    col = db.aggregates
    out: dict[tuple[str, int], dict[str, float]] = {}
    try:
        t = time.perf_counter()
        for i in range(0, docs, 1000):
            await col.insert_many([{"_id": f"a{j:07d}", "v": 1, "state": "x" * 200, "_seen": [], "_outbox": []}
                                   for j in range(i, min(i + 1000, docs))])
        out[("insert_many, 1,000 a call (docs/s)", 1)] = {"ops": docs / (time.perf_counter() - t), "p50": 0, "p99": 0}
        await db.consumer.insert_many([{"_id": f"c{j:07d}", "n": 0, "_seen": []} for j in range(docs // 2)])
        for c in concurrencies:
            run = uuid.uuid4().hex[:4]
            # distinct documents per run (7919 is prime, so i -> i*7919 % docs is a permutation)
            pick = lambda i: f"a{(i * 7919 + c) % docs:07d}"  # noqa: E731
            versions: dict[int, int] = {}

            async def read(i):
                doc = await col.find_one({"_id": pick(i)}, {"_outbox": 0, "_seen": 0})
                versions[i] = doc["v"]

            async def cas(i):
                res = await col.update_one(
                    {"_id": pick(i), "v": versions[i]},
                    {"$inc": {"v": 1}, "$set": {"state": f"s{run}{i}"},
                     "$push": {"_outbox": {**ENTRY, "event_id": f"{run}-{i}"}}})
                assert res.modified_count == 1, f"compare-and-set missed on {uri}"

            async def clear(i):
                await col.update_one({"_id": pick(i)}, {"$pullAll": {"_outbox": [{**ENTRY, "event_id": f"{run}-{i}"}]}})

            async def apply_once(i):
                # half the keys exist, half are upserted; the first tenth are replays (already seen)
                k = i % (n - n // 10)
                ev = f"ev{run}-{k}"
                try:
                    await db.consumer.update_one(
                        {"_id": f"c{(k * 7919) % docs:07d}", "_seen": {"$ne": ev}},
                        {"$inc": {"n": 1}, "$push": {"_seen": {"$each": [ev], "$slice": -50}}}, upsert=True)
                except DuplicateKeyError:
                    pass

            async def audit(i):
                await db.audit.insert_one({"_id": f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}", "actor": "u",
                                           "action": "x.changed", "key": pick(i), "topic": None, "payload": {"i": i}})

            async def page(i):
                after = f"a{(i * 7919) % docs:07d}"
                got = await col.find({"_id": {"$gt": after}}, {"_outbox": 0, "_seen": 0}).sort("_id", 1).limit(50).to_list(50)
                assert len(got) == 50, f"short page on {uri}"  # the `n…` and `hot…` ids sort after the `a…` ones

            out[("insert aggregate + outbox entry", c)] = await timed(n, c, lambda i: col.insert_one(
                {"_id": f"n{run}{i:07d}", "v": 1, "state": "y" * 200, "_outbox": [{**ENTRY, "event_id": f"{run}{i}"}]}))
            out[("find_one by _id", c)] = await timed(n, c, read)
            out[("CAS on v: $inc v, $set, $push outbox", c)] = await timed(n, c, cas)
            out[("relay: $pullAll outbox by _id", c)] = await timed(n, c, clear)
            out[("apply_once upsert guarded by _seen", c)] = await timed(n, c, apply_once)
            out[("insert audit row", c)] = await timed(n, c, audit)
            out[("cursor page of 50 by _id range", c)] = await timed(max(n // 50, 5), c, page)
            hot = f"hot{run}"
            await col.insert_one({"_id": hot, "n": 0})
            out[("$inc one hot document", c)] = await timed(n, c, lambda i: col.update_one({"_id": hot}, {"$inc": {"n": 1}}))
            got = (await col.find_one({"_id": hot}))["n"]
            assert got == n, f"lost updates on {uri}: {got} of {n}"
        left = await col.count_documents({"_id": {"$lt": "b"}, "_outbox.0": {"$exists": True}})  # the a… aggregates
        assert left == 0, f"{left} outbox entries not cleared on {uri}"
    finally:
        await client.drop_database(db.name)
        await client.close()
    return out


async def main(uris: list[tuple[str, str]], docs: int, n: int, concurrencies: list[int], rounds: int) -> None:
    # the machine is shared and its load moves by the minute: the backends take turns per concurrency and round
    # (order alternating), each on a fresh pre-filled database, and each cell is the median of its rounds
    names = [name for name, _ in uris]
    runs: dict[str, list[dict]] = {x: [] for x in names}
    for c in concurrencies:
        for r in range(rounds):
            for name, uri in (uris if r % 2 == 0 else uris[::-1]):
                runs[name].append(await mix(uri, docs, n, [c]))
    results = {x: {} for x in names}
    for x in names:
        for key in dict.fromkeys(k for run in runs[x] for k in run):
            cells = [run[key] for run in runs[x] if key in run]
            results[x][key] = {m: statistics.median(cell[m] for cell in cells) for m in ("ops", "p50", "p99")}
    head = f"{'operation (collection of ' + format(docs, ',') + ' documents)':40s}{'conc':>5s}"
    head += "".join(f"{x + ' ops/s':>18s}{'p50 ms':>9s}{'p99 ms':>9s}" for x in names)
    if len(names) == 2:
        head += f"{names[1] + '/' + names[0]:>22s}"
    print(f"\nmedian of {rounds} rounds, backends alternating\n" + head)
    for op, c in results[names[0]]:
        line = f"{op:40s}{c:5d}"
        for x in names:
            r = results[x][(op, c)]
            line += f"{r['ops']:18,.0f}{r['p50']:9.1f}{r['p99']:9.1f}"
        if len(names) == 2:
            line += f"{results[names[1]][(op, c)]['ops'] / results[names[0]][(op, c)]['ops']:22.2f}"
        print(line)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", action="append", required=True, help="name=mongodb://… (repeat)")
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--ops", type=int, default=600, help="operations per kind and concurrency (≤ --docs)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per backend and concurrency (median reported)")
    ap.add_argument("--concurrency", type=int, action="append", help="in-flight operations (repeat; 1, 8, 32)")
    a = ap.parse_args()
    asyncio.run(main([tuple(u.split("=", 1)) for u in a.uri], a.docs, a.ops, a.concurrency or [1, 8, 32], a.rounds))
