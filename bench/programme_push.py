"""A new programme's push end to end (issue 22 acceptance): with N businesses in recommend's read models, a new
programme matching ~20% of them is published (`recommend.ProgrammeAdded` on Kafka, as the operators' route publishes
it) and timed until every matched business's inbox item exists in the notifications service. The path: recommend
adds it to the segments it is eligible in, finds their businesses through the segment index and writes one guarded
update with a `Notify` per business (outbox), its relay publishes them, notifications puts each in the person's inbox
(programme news in the daily digest, as most people take it).

    uv run --frozen python bench/programme_push.py --businesses 1000000     # the acceptance run (~10 min of loading)
    uv run --frozen python bench/programme_push.py --businesses 50000

The programme is a copy of a catalogue programme, with industries added to its tags, whose push share is nearest 20%
(under a new id), the share computed from the segments' sizes with recommend's own rules (`segment_candidates`,
`segment_pushes`); the expected
inbox items are the members of those segments. Profiles and read models are bulk-loaded by `bench/recommend.py`'s
loader. Completion: a random sample of the items not yet seen is looked up by `_id` every 2 s (a count would scan
the inbox, FerretDB); when a sample finds them all, every item is checked, and the run ends when none is missing.
Environment: KAFKA_BOOTSTRAP, MONGO_URI (default the test ports).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiokafka import AIOKafkaProducer  # noqa: E402
from pymongo import AsyncMongoClient, MongoClient  # noqa: E402

import recommend as recommend_bench  # noqa: E402  (bench/recommend.py: the loader)
from contracts import Envelope  # noqa: E402
from contracts.events.recommend import ProgrammeAdded  # noqa: E402
from recommend_service import domain  # noqa: E402
from tests.support import Infra, Namespace, ServiceProcess, free_port  # noqa: E402


def pick(catalogue: list[dict], sizes: Counter, n: int) -> tuple[dict, list[str]]:
    """A programme whose push reaches the share of businesses nearest 20%, and its segments: each catalogue programme
    as it is and with industries added to its tags (largest first: a broader programme), the nearest of them all."""
    def pushed(p):
        return [s for s in sizes if domain.segment_candidates([p], s) and domain.segment_pushes(p, s)]
    by_industry = Counter()
    for seg, k in sizes.items():
        by_industry[seg.split("|")[0]] += k
    variants = []
    for base in catalogue:
        tags = dict(base.get("tags") or {})
        industries = list(tags.get("industries") or [])
        variants.append(base)
        for ind, _ in by_industry.most_common():
            if ind not in industries:
                industries = [*industries, ind]
                variants.append({**base, "tags": {**tags, "industries": industries}})
    best = min(variants, key=lambda p: abs(sum(sizes[s] for s in pushed(p)) / n - 0.2))
    return best, pushed(best)


async def wait_for(db, ids: list[str], started: float) -> float:
    remaining, rnd = list(ids), random.Random(7)
    while True:
        await asyncio.sleep(2)
        sample = rnd.sample(remaining, min(300, len(remaining)))
        found = {d["_id"] async for d in db.inbox.find({"_id": {"$in": sample}}, {"_id": 1})}
        print(f"  {time.perf_counter() - started:6.0f} s: {len(found)}/{len(sample)} of a sample of the "
              f"{len(remaining):,} items not seen yet exist", flush=True)
        if len(found) < len(sample):
            continue
        missing = []
        for i in range(0, len(remaining), 1000):  # every item, by `_id`
            part = remaining[i:i + 1000]
            have = {d["_id"] async for d in db.inbox.find({"_id": {"$in": part}}, {"_id": 1})}
            missing += [x for x in part if x not in have]
        if not missing:
            return time.perf_counter() - started
        remaining = missing


async def push(infra: Infra, ns: Namespace, programme: dict, expected: list[str], owners: list[str]) -> float:
    db = AsyncMongoClient(infra.mongo)[ns.db("notifications")]
    for i in range(0, len(owners), 5000):  # the people take programme news in their daily digest
        await db.contacts.insert_many([{"_id": o, "digest": ["programme"]} for o in owners[i:i + 5000]])
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        msg = ProgrammeAdded(**{k: v for k, v in programme.items() if k in ProgrammeAdded.model_fields})
        env = Envelope.wrap(msg, producer="bench")
        started = time.perf_counter()
        await producer.send_and_wait(ns.topic(msg.topic), env.model_dump_json().encode(), key=msg.key().encode())
    finally:
        await producer.stop()
    return await wait_for(db, expected, started)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--businesses", type=int, default=50_000)
    ap.add_argument("--per-business", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=22)
    a = ap.parse_args()
    infra = Infra(os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
                  os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017"), "bench")
    ns = Namespace()
    info = recommend_bench.load(infra.mongo, ns.db("recommend"), a.businesses, a.per_business, a.seed)
    members = info["members"]  # segment#chunk -> {business: owner}
    sizes = Counter()
    for key, m in members.items():
        sizes[key.rsplit("#", 1)[0]] += len(m)
    base, segs = pick(domain.load_catalogue(), sizes, a.businesses)
    programme = {**base, "programme_id": "bench-push-new", "name": f"{base['name']}（新規）"}
    chosen = set(segs)
    matched = [(b, o) for key, m in members.items() if key.rsplit("#", 1)[0] in chosen for b, o in m.items()]
    expected = [f"notify:{domain.notification_id(b, programme['programme_id'])}" for b, _ in matched]
    print(f"programme like {base['programme_id']} for {', '.join(base['tags'].get('industries') or ['any industry'])}: "
          f"{len(segs)} of {len(sizes)} segments, {len(matched):,} of "
          f"{a.businesses:,} businesses ({len(matched) / a.businesses:.1%})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        services = [ServiceProcess("recommend", infra, ns, Path(tmp), OTEL_SPANS_FILE="", LOG_LEVEL="WARNING"),
                    ServiceProcess("notifications", infra, ns, Path(tmp), OTEL_SPANS_FILE="", LOG_LEVEL="WARNING",
                                   SMTP_HOST="127.0.0.1", SMTP_PORT=str(free_port()), SMTP_BACKOFF_SECONDS="3600")]
        try:
            for s in services:
                s.start(timeout=300)
            elapsed = asyncio.run(push(infra, ns, programme, expected, [o for _, o in matched]))
        finally:
            for s in services:
                s.stop()
    client = MongoClient(infra.mongo)
    for svc in ("recommend", "notifications"):
        client.drop_database(ns.db(svc))
    print(f"{len(expected):,} inboxes ({len(expected) / a.businesses:.1%} of {a.businesses:,} businesses) in "
          f"{elapsed:.0f} s = {elapsed / 60:.1f} min ({len(expected) / elapsed:,.0f} inbox items/s); target: "
          f"~20% of 1,000,000 within 10 minutes")


if __name__ == "__main__":
    main()
