"""Ratings radar benchmark: N ratings over 10,000 experts replayed from Kafka into the ratings service's radar
code (R-RAT-02: per-day buckets, optimistic per-expert write carrying ExpertRadarUpdated in its outbox, the
real outbox relay publishing it and writing the audit entry), on the real Kafka and MongoDB-wire server.

    uv run --frozen python bench/ratings.py            # 100,000 ratings
    uv run --frozen python bench/ratings.py --full     # 1,000,000 ratings

Prints, from one run: the raw Kafka consume rate (baseline: fetch + JSON decode, nothing else), the replay
rate through the radar pipeline and its ratio to the baseline, and the lag from a rating event (its Kafka
timestamp) to the updated radar being stored (p50/p99), measured on a paced live stream after the replay.
KAFKA_BOOTSTRAP / MONGO_URI select the servers (default: the test ports 19092 / 37017).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.vocab import RATING_AXES
from ratings_service import store
from servicekit.bus import ensure_topics
from servicekit.service import Service
from servicekit.settings import Settings

KAFKA = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
MONGO = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017")
PARTITIONS = 6


def rating(i: int, experts: int, rnd: random.Random, now: datetime) -> dict:
    return {"owed_id": f"bench-{i}:business", "expert_id": f"exp-{rnd.randrange(experts):05d}",
            "scores": {a: rnd.randint(1, 5) for a in RATING_AXES},
            # spread over ~5 months so part of the stream is already outside the 120-day window
            "given_at": (now - timedelta(days=rnd.uniform(0, 150))).isoformat()}


async def produce(topic: str, records: list[dict], rate: float | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=5, max_batch_size=256 * 1024, acks="all")
    await producer.start()
    try:
        start, futures = time.perf_counter(), []
        for n, r in enumerate(records):
            futures.append(await producer.send(topic, json.dumps(r).encode(), key=r["expert_id"].encode()))
            if rate and n % 50 == 0:  # paced: keep to `rate` records per second
                ahead = n / rate - (time.perf_counter() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def consumer(topic: str, group: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=group, auto_offset_reset="earliest",
                            enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)


async def raw_consume(topic: str, n: int) -> float:
    """Baseline: how fast the same records can merely be fetched and decoded."""
    c = consumer(topic, None)
    await c.start()
    try:
        got, start = 0, time.perf_counter()
        while got < n:
            for recs in (await c.getmany(timeout_ms=1000, max_records=5000)).values():
                for r in recs:
                    json.loads(r.value)
                got += sum(1 for _ in recs)
        return got / (time.perf_counter() - start)
    finally:
        await c.stop()


class Pipeline:
    """Consumes ratings and applies them to the radars with the service's own `store.update_radar`,
    coalescing the ratings of one expert that arrive in the same fetched batch into one write."""

    def __init__(self, svc: Service, topic: str, concurrency: int, batch: int):
        self.svc, self.topic, self.sem, self.batch = svc, topic, asyncio.Semaphore(concurrency), batch
        self.lags: list[float] = []
        self.done = 0

    async def _apply(self, expert: str, recs: list) -> None:
        changes = []
        for r in recs:
            v = json.loads(r.value)
            day = store.rating_day(datetime.fromisoformat(v["given_at"]))
            changes.append((f"{v['owed_id']}:r0", lambda radar, d=day, s=v["scores"]: radar.add(d, s)))
        async with self.sem:
            await store.update_radar(self.svc, expert, changes)
        stored = time.time() * 1000
        self.lags.extend(stored - r.timestamp for r in recs)
        self.done += len(recs)

    async def run(self, n: int, group: str) -> float:
        c = consumer(self.topic, group)
        await c.start()
        try:
            start, target = time.perf_counter(), self.done + n
            while self.done < target:
                batch = await c.getmany(timeout_ms=500, max_records=self.batch)
                by_expert: dict[str, list] = {}
                for recs in batch.values():
                    for r in recs:
                        by_expert.setdefault(r.key.decode(), []).append(r)
                await asyncio.gather(*(self._apply(e, rs) for e, rs in by_expert.items()))
                if batch:
                    await c.commit()
                if n >= 100_000 and self.done // 50_000 > (self.done - sum(map(len, batch.values()))) // 50_000:
                    # progress of a long replay, so even a run stopped early leaves figures
                    print(f"    {self.done:>9,} ratings  {self.done / (time.perf_counter() - start):,.0f}/s so far",
                          flush=True)
            return n / (time.perf_counter() - start)
        finally:
            await c.stop()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else (values or [0])[0]


async def main(n: int, experts: int, concurrency: int, live: int, relay: bool, batch: int) -> None:
    run = "bench" + uuid.uuid4().hex[:8]
    topic = f"{run}.ratings.replay"
    settings = Settings(service_name="ratings", kafka_bootstrap=KAFKA, mongo_uri=MONGO, mongo_db=f"{run}_ratings",
                        topic_prefix=f"{run}.", log_level="WARNING")
    svc = Service("ratings", title="bench", outbox=["radars"], produces=[], settings=settings, honour_revocations=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await ensure_topics(settings, {"ratings.events"})
    await store.ensure_indexes(svc.db)
    await svc.broker.start()
    if relay:
        svc.relay.start()
    else:  # isolates the radar writes from the relay's scans of the radars collection
        svc.relay.kick = lambda: None
    rnd, now = random.Random(7), datetime.now(UTC)
    try:
        print(f"ratings bench: {n:,} ratings over {experts:,} experts; kafka {KAFKA}, mongo {MONGO}")
        t = time.perf_counter()
        await produce(topic, [rating(i, experts, rnd, now) for i in range(n)])
        print(f"  produced           {n / (time.perf_counter() - t):>10,.0f} ratings/s")
        baseline = await raw_consume(topic, n)
        print(f"  raw Kafka consume  {baseline:>10,.0f} records/s   (baseline)")
        pipe = Pipeline(svc, topic, concurrency, batch)
        rate = await pipe.run(n, group=f"{run}-radar")
        radars = await svc.db.radars.count_documents({})
        print(f"  radar replay       {rate:>10,.0f} ratings/s   = 1/{baseline / rate:,.0f} of the baseline "
              f"({radars:,} radars, {concurrency} writes in flight)")
        # Live: a paced stream at half the replay rate, so the lag is the pipeline's, not a backlog's.
        pipe.lags.clear()
        pace = max(rate / 2, 50)
        live_records = [rating(n + i, experts, rnd, datetime.now(UTC)) for i in range(live)]
        await asyncio.gather(produce(topic, live_records, rate=pace), pipe.run(live, group=f"{run}-radar"))
        print(f"  live lag event -> radar stored at {pace:,.0f}/s: p50 {pct(pipe.lags, 0.5):,.0f} ms, "
              f"p99 {pct(pipe.lags, 0.99):,.0f} ms ({len(pipe.lags):,} ratings)")
        # The relay publishes the ExpertRadarUpdated events asynchronously; wait for the outbox to drain.
        t = time.perf_counter()
        while relay and time.perf_counter() - t < 120:
            left = await svc.db.radars.count_documents({"_outbox.0": {"$exists": True}})
            if not left:
                print(f"  outbox drained {time.perf_counter() - t:.1f} s after the last write")
                break
            await asyncio.sleep(1)
        else:
            if relay:
                print(f"  outbox NOT drained 120 s after the last write ({left:,} radars still hold events)")
    finally:
        await svc.relay.stop()
        await svc.broker.stop()
        await svc.mongo.drop_database(settings.database)
        await svc.mongo.close()
        await admin.delete_topics([topic, settings.topic("ratings.events"), settings.topic("ratings.events.dlq")])
        await admin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="ratings to replay (default 100,000)")
    ap.add_argument("--full", action="store_true", help="1,000,000 ratings")
    ap.add_argument("--experts", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=4, help="radar writes in flight (the local FerretDB serialises writes)")
    ap.add_argument("--live", type=int, default=2_000, help="ratings in the paced live phase")
    ap.add_argument("--batch", type=int, default=5_000,
                    help="records per fetch; one expert's ratings in a fetch are one write (fewer experts: use less)")
    ap.add_argument("--no-relay", action="store_true", help="do not run the outbox relay (radar writes alone)")
    a = ap.parse_args()
    asyncio.run(main(1_000_000 if a.full else a.n, a.experts, a.concurrency, a.live, not a.no_relay, a.batch))
