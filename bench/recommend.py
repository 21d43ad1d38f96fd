"""Recommend at scale (R-OPS-03, R-REC-01..03): p50/p99 of recommendations top-10 and the diagnosis next to the
gateway's (or the service's) /healthz measured in the same run, over N businesses and ~5 interactions each.

Data: businesses from `bench/dataset.py` (same seed, same rows), each with a handful of programmes it used or
favoured (most often ones of its industry). The recommend service's read models are built from them exactly as its
consumers keep them (segments, segment index, peer sketches, item-item counts, uptake counters: the same domain
functions), and bulk-loaded: building 1,000,000 profiles through Kafka is the import's benchmark (`--events`
measures that path's rate on fresh businesses in the same run).

    uv run --frozen python bench/recommend.py --businesses 100000            # own service on the test infrastructure
    uv run --frozen python bench/recommend.py --businesses 1000000 --gateway # through HAProxy (gateway.sh, test ports)
    uv run --frozen python bench/recommend.py --businesses 100000 --events 5000   # + the event path's rate
Environment: KAFKA_BOOTSTRAP, MONGO_URI (default the test ports), TEST_GATEWAY_PORT, TEST_SERVICE_PORT_BASE.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
from pymongo import InsertOne, MongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import dataset  # noqa: E402
from recommend_service import diagnosis, domain, store  # noqa: E402


def interactions(rnd: random.Random, candidates: list[dict], industry: str, mean: float) -> list[tuple[str, str]]:
    """A business's programmes: ~`mean` of them, those naming its industry three times as likely."""
    k = min(len(candidates), max(0, int(rnd.expovariate(1 / mean) + 0.5)))
    weights = [3 if industry in (p["tags"].get("industries") or []) else 1 for p in candidates]
    picked: list[str] = []
    pool = list(zip(candidates, weights))
    while pool and len(picked) < k:
        p, _ = rnd.choices(pool, [w for _, w in pool])[0]
        picked.append(p["programme_id"])
        pool = [(q, w) for q, w in pool if q["programme_id"] != p["programme_id"]]
    return [(pid, "used" if rnd.random() < 0.8 else "favourite") for pid in picked]


def load(mongo_uri: str, db_name: str, n: int, per_business: float, seed: int) -> dict:
    """Profiles and read models for n businesses; returns what the measurements need (a sample of ids and owners, and
    the segment index: segment#chunk -> {business: owner})."""
    client = MongoClient(mongo_uri)
    db = client[db_name]
    catalogue = domain.load_catalogue()
    rnd, irnd = random.Random(seed), random.Random(seed + 1)
    segments: dict[str, list[dict]] = {}
    members: dict[str, dict[str, str]] = {}
    sketches: dict[str, dict] = {}
    stats: dict[str, dict] = {}
    sample, batch, total_items, t0 = [], [], 0, time.perf_counter()
    for i in range(n):
        row = dataset.business(i, rnd)
        bid = f"bench-{i:07d}"
        owner = f"acc-bench-{i:07d}"
        size = domain.size_class(row["industry"], row["employees"])
        seg = domain.segment(row["industry"], size, row["prefecture"])
        group = domain.peer_group(row["industry"], size)
        cands = segments.setdefault(seg, domain.segment_candidates(catalogue, seg))
        fin = sorted(row["financials"], key=lambda p: -p["fiscal_year"])
        ind = diagnosis.indicators(fin, row["employees"])
        items = interactions(irnd, cands, row["industry"], per_business)
        total_items += len(items)
        mine: set[str] = set()
        for pid, kind in items:  # as the InteractionRecorded consumer counts them
            for key, inc in domain.co_count_increments(mine, pid).items():
                s = stats.setdefault(key, {"users": 0, "co": {}, "uptake": {}})
                for f, v in inc.items():
                    if f == "users":
                        s["users"] += v
                    else:
                        s["co"][f[3:]] = s["co"].get(f[3:], 0) + v
            mine.add(pid)
            if kind == "used":
                cell = domain.cell_key(row["prefecture"], row["industry"])
                s = stats.setdefault(pid, {"users": 0, "co": {}, "uptake": {}})
                s["uptake"][cell] = s["uptake"].get(cell, 0) + 1
        g = sketches.setdefault(group, {"n": 0, "sketch": {}})
        g["n"] += 1
        for key, v in diagnosis.sketch_delta(None, ind).items():
            k, b = key.split(".", 1)
            g["sketch"].setdefault(k, {})[b] = g["sketch"].get(k, {}).get(b, 0) + v
        members.setdefault(store.member_chunk(seg, bid), {})[bid] = owner
        notified = domain.to_push(cands, {**row, "size": size}, set())
        batch.append(InsertOne({"_id": bid, "name": row["name"], "prefecture": row["prefecture"], "industry": row["industry"],
                                "employees": row["employees"], "corporate_number": row.get("corporate_number"),
                                "financials": fin, "owner": owner, "size": size, "segment": seg, "peer_group": group,
                                "indicators": ind, "items": sorted(mine), "uses": [f"{p}:{k}" for p, k in items],
                                "notified": notified, "_seen": [], "_v": len(items)}))
        if i % max(n // 200, 1) == 0:
            sample.append((bid, owner))
        if len(batch) == 5000:
            db.business_profiles.bulk_write(batch, ordered=False)
            batch = []
            if (i + 1) % 100_000 == 0:
                print(f"  {i + 1:,} profiles loaded ({(i + 1) / (time.perf_counter() - t0):,.0f}/s)", flush=True)
    if batch:
        db.business_profiles.bulk_write(batch, ordered=False)
    db.segments.insert_many([{"_id": s, "candidates": c, "candidate_ids": [p["programme_id"] for p in c]}
                             for s, c in segments.items()])
    db.segment_members.insert_many([{"_id": k, "m": m} for k, m in members.items()])
    db.peer_groups.insert_many([{"_id": g, **v, "_seen": []} for g, v in sketches.items()])
    db.programme_stats.insert_many([{"_id": p, **v, "_seen": []} for p, v in stats.items()])
    print(f"loaded {n:,} businesses with {total_items:,} interactions, {len(segments):,} segments, "
          f"{len(sketches)} peer groups in {time.perf_counter() - t0:.0f} s")
    client.close()
    return {"sample": sample, "members": members}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def token(key: str, sub: str, biz: str, issuer: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "roles": ["business"], "scope": "portal", "biz": [{"id": biz, "role": "prime"}],
                       "aud": "smeportal", "iat": now, "exp": now + 3600, "iss": issuer, "jti": f"j-{sub}"},
                      Path(key).read_text(), algorithm="RS256")


async def measure(base_url: str, key: str, issuer: str, sample: list[tuple[str, str]], rounds: int, pace: float) -> None:
    """Interleaved rounds (/healthz, recommendations, diagnosis), each business's own token; paced under the
    gateway's per-user and per-address rate limits. A replica in steady state: one unmeasured pass over the sample
    first, so the shared read models its businesses touch (segments, peer groups, programme counts) are in the
    replica's cache, as the portal's traffic keeps them; what is measured is each request's own work."""
    heads = {b: {"authorization": f"Bearer {token(key, o, b, issuer)}"} for b, o in sample}
    lines = {"GET /healthz (baseline)": lambda b: ("/healthz", {}),
             "GET /businesses/{id}/recommendations (top 10)": lambda b: (f"/businesses/{b}/recommendations", heads[b]),
             "GET /businesses/{id}/diagnosis": lambda b: (f"/businesses/{b}/diagnosis", heads[b])}
    times: dict[str, list[float]] = {k: [] for k in lines}
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        warm = len(sample)
        for r in range(rounds + warm):
            t_round = time.perf_counter()
            b = sample[r % len(sample)][0]
            for label, what in lines.items():
                path, h = what(b)
                t = time.perf_counter()
                resp = await http.get(path, headers=h)
                ms = (time.perf_counter() - t) * 1000
                if resp.status_code != 200:
                    raise SystemExit(f"GET {path} -> {resp.status_code}: {resp.text[:300]}")
                if r >= warm:  # the first pass warms connections and the replica's cache up
                    times[label].append(ms)
            await asyncio.sleep(max(0.0, pace - (time.perf_counter() - t_round)))
    base = pct(times["GET /healthz (baseline)"], 99)
    print(f"\n{'request (' + base_url + ')':60s} {'p50 ms':>8s} {'p99 ms':>8s} {'p99/healthz p99':>16s}")
    for label, xs in times.items():
        print(f"{label:60s} {pct(xs, 50):8.2f} {pct(xs, 99):8.2f} {pct(xs, 99) / base:16.1f}")
    print(f"{rounds} interleaved rounds, sequential requests, {len(sample)} businesses' own tokens; target: p99 ≤ 3× /healthz p99")


async def event_path(kafka: str, mongo_uri: str, db_name: str, prefix: str, n: int, seed: int) -> None:
    """The consumer path: n fresh businesses published as identity would (registration + financials), timed until
    the recommend service has learnt them all; next to raw Kafka produce→consume of the same records."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from pymongo import AsyncMongoClient

    from contracts import Envelope
    from contracts.events.identity import BusinessProfileChanged, BusinessRegistered

    rnd = random.Random(seed + 7)
    envs = []
    for i in range(n):
        row = dataset.business(10_000_000 + i, rnd)
        bid = f"ev-{i:07d}"
        envs.append(Envelope.wrap(BusinessRegistered(business_id=bid, **{k: row.get(k) for k in (
            "corporate_number", "name", "prefecture", "industry", "employees")}), producer="identity", actor=f"acc-{bid}"))
        envs.append(Envelope.wrap(BusinessProfileChanged(business_id=bid, profile_version=1, changed=["financials"],
                                                         **{k: row.get(k) for k in ("name", "prefecture", "industry",
                                                                                     "employees", "capital", "financials")}),
                                  producer="identity", actor=f"acc-{bid}"))
    topic = f"{prefix}identity.events"
    raw = f"{prefix}bench.raw"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    await admin.create_topics([NewTopic(raw, 3, 1)])
    await admin.close()
    p = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True, linger_ms=5)
    await p.start()
    # baseline: the same records through Kafka alone
    c = AIOKafkaConsumer(raw, bootstrap_servers=kafka, auto_offset_reset="earliest", group_id=None)
    await c.start()
    t = time.perf_counter()
    await asyncio.gather(*[await p.send(raw, e.model_dump_json().encode(), key=e.key.encode()) for e in envs])
    got = 0
    while got < len(envs):
        got += sum(len(v) for v in (await c.getmany(timeout_ms=500)).values())
    raw_rate = len(envs) / (time.perf_counter() - t)
    await c.stop()
    t = time.perf_counter()
    await asyncio.gather(*[await p.send(topic, e.model_dump_json().encode(), key=e.key.encode()) for e in envs])
    await p.stop()
    client = AsyncMongoClient(mongo_uri)
    col = client[db_name].business_profiles
    # checked in publishing order, each round stopping at the first not yet learnt: ~n + rounds lookups in all, so the
    # watcher does not load the database it measures (one lookup per waiting business every round did)
    waiting = [f"ev-{i:07d}" for i in range(n)]
    while waiting:
        while waiting:
            d = await col.find_one({"_id": waiting[0]}, {"financials": 1})
            if not (d and d.get("financials")):
                break
            waiting.pop(0)
        if waiting:
            await asyncio.sleep(0.5)
    took = time.perf_counter() - t
    await client.close()
    print(f"\nevent path: {n:,} businesses (2 events each) learnt by recommend in {took:.1f} s = {n / took:,.0f} businesses/s "
          f"({2 * n / took:,.0f} events/s); raw Kafka produce→consume of the same records {raw_rate:,.0f} records/s "
          f"(×{raw_rate / (2 * n / took):,.0f}); 1,000,000 businesses at this rate: {1_000_000 / (n / took) / 60:,.0f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--businesses", type=int, default=100_000)
    ap.add_argument("--per-business", type=float, default=5.0, help="mean interactions per business")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--events", type=int, default=0, help="also time the consumer path on this many fresh businesses")
    ap.add_argument("--gateway", action="store_true", help="measure through HAProxy (deploy/local/gateway.sh)")
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--key", default=str(ROOT / "var" / "test" / "keys" / "jwt-private.pem"))
    a = ap.parse_args()
    from tests.support import TEST_ISSUER, Infra, Namespace, ServiceProcess, gateway_env, service_port

    infra = Infra(os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"), os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017"),
                  "bench")
    ns = Namespace()
    db = ns.db("recommend")
    info = load(infra.mongo, db, a.businesses, a.per_business, a.seed)
    proc = ServiceProcess("recommend", infra, ns, Path(tempfile.mkdtemp()), port=service_port("recommend"),
                          OTEL_SPANS_FILE="", OUTBOX_POLL_SECONDS="0.5", LOG_LEVEL="WARNING")
    proc.start(timeout=300)
    env = gateway_env(infra, ns)
    try:
        if a.gateway:
            subprocess.run([ROOT / "deploy" / "local" / "gateway.sh", "start"], env=env, check=True)
            base = f"http://127.0.0.1:{env['GATEWAY_PORT']}/api/recommend"
        else:
            base = proc.url
        asyncio.run(measure(base, a.key, TEST_ISSUER, info["sample"], a.rounds, pace=0.05 if a.gateway else 0.0))
        if a.events:
            asyncio.run(event_path(infra.kafka, infra.mongo, db, ns.prefix, a.events, a.seed))
    finally:
        if a.gateway:
            subprocess.run([ROOT / "deploy" / "local" / "gateway.sh", "stop"], env=env)
        proc.stop()
        MongoClient(infra.mongo).drop_database(db)


if __name__ == "__main__":
    main()
