"""Ratings radar benchmark: given ratings reach the windowed radar through the ratings service's own consumer of
RatingGiven (R-RAT-02: `ratings_service.consumers.given_handlers`, batches of what one poll returned, each radar read
once and written once per batch with ExpertRadarUpdated in its outbox; the real outbox relay publishing it and writing
the audit entry), on the real Kafka and MongoDB-wire server, with radars already holding N ratings.

    uv run --frozen python bench/ratings.py                       # radars holding 100,000 ratings
    uv run --frozen python bench/ratings.py --full                # radars holding 1,000,000 ratings
    CONSUMER_BATCH_MAX=1 uv run --frozen python bench/ratings.py  # one rating at a time (before batching)

Phases, all in one run:
  1. load: the radars of `--experts` experts as N ratings spread over ~5 months leave them (packed buckets and the
     rating keys they remember), written directly (replaying N ratings through the consumer would take hours here);
  2. replay: `--replay` ratings given while the consumer was away (owed documents stored, RatingGiven on the topic),
     then the consumer started: ratings/s through the radar, next to the raw Kafka consume rate of the same records;
  3. live: `--live` ratings at `--rate` per second (default 275), each one's owed document stored and its RatingGiven
     published as the giving request does; lag from the event (its `occurred_at`) to its radar stored, p50/p99.
KAFKA_BOOTSTRAP / MONGO_URI select the servers (default: the test ports 19092 / 37017); CONSUMER_BATCH_MAX (200)
the most records the consumer takes per poll.
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
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Envelope
from contracts.events.ratings import RatingGiven
from contracts.vocab import RATING_AXES
from ratings_service import store
from ratings_service.consumers import given_handlers
from ratings_service.domain import Radar
from servicekit.bus import ensure_topics
from servicekit.service import Service
from servicekit.settings import Settings
from servicekit.store import SEEN_KEEP

KAFKA = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
MONGO = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017")


def rating(i: int, experts: int, rnd: random.Random, now: datetime) -> dict:
    """An owed document as the giving request leaves it (status given, not yet on the radar)."""
    return {"_id": f"bench-{i}:business", "status": "given", "dispatch_id": f"bench-{i}",
            "expert_id": f"exp-{rnd.randrange(experts):05d}", "business_id": f"biz-{i}",
            "rater_account_id": f"acc-{i}", "rater_kind": "business", "route": "B", "fiscal_year": 2026,
            "since": now, "scores": {a: rnd.randint(1, 5) for a in RATING_AXES},
            # spread over ~5 months so part of the stream is already outside the 120-day window
            "given_at": now - timedelta(days=rnd.uniform(0, 150)), "rev": 0, "radar_applied": False}


def given(owed: dict) -> Envelope:
    return Envelope.wrap(RatingGiven(expert_id=owed["expert_id"], owed_id=owed["_id"], dispatch_id=owed["dispatch_id"],
                                     business_id=owed["business_id"], rater_account_id=owed["rater_account_id"],
                                     rater_kind="business"), producer="ratings")


async def load_radars(svc: Service, n: int, experts: int, rnd: random.Random) -> None:
    """The radars as `n` ratings leave them: buckets per day, packed, with the keys of the latest ratings."""
    now = datetime.now(UTC)
    radars: dict[str, tuple[Radar, list[str]]] = {}
    for i in range(n):
        r = rating(-1 - i, experts, rnd, now)
        radar, keys = radars.setdefault(r["expert_id"], (Radar(), []))
        radar.add(store.rating_day(r["given_at"]), r["scores"])
        keys.append(store.rating_key(r))
    docs = []
    for expert_id, (radar, keys) in radars.items():
        radar.expire(store.today())
        docs.append({"_id": expert_id, "days": radar.pack(), "oldest": radar.oldest() or "9999-12-31",
                     "updated_at": now, "applied": " ".join(keys[-SEEN_KEEP:]), "version": len(keys), "_outbox": []})
    for i in range(0, len(docs), 500):
        await svc.db.radars.insert_many(docs[i:i + 500], ordered=False)


async def produce(topic: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=5, max_batch_size=256 * 1024, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, e.model_dump_json().encode(), key=e.key.encode()) for e in envelopes]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consume(topic: str, n: int) -> float:
    """Baseline: how fast the same records can merely be fetched and decoded."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=None, auto_offset_reset="earliest",
                         enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    try:
        got, start = 0, time.perf_counter()
        while got < n:
            for recs in (await c.getmany(timeout_ms=1000, max_records=5000)).values():
                for r in recs:
                    json.loads(r.value)
                got += len(recs)
        return got / (time.perf_counter() - start)
    finally:
        await c.stop()


class Clock:
    """Wraps the service's radar writes to note when each rating's radar was stored."""

    def __init__(self):
        self.stored: dict[str, float] = {}  # owed id -> time its radar write returned (epoch seconds)
        single, batch = store.apply_rating, store.apply_ratings

        async def apply_rating(svc, owed, **kw):
            await single(svc, owed, **kw)
            self.stored[owed["_id"]] = time.time()

        async def apply_ratings(svc, items):
            out = await batch(svc, items)
            at = time.time()
            for owed, _ in items:
                self.stored[owed["_id"]] = at
            return out

        store.apply_rating, store.apply_ratings = apply_rating, apply_ratings

    async def until(self, ids: list[str], timeout: float = 600) -> None:
        deadline = time.perf_counter() + timeout
        while any(i not in self.stored for i in ids):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{sum(i not in self.stored for i in ids)} ratings never reached their radar")
            await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else (values or [0])[0]


async def main(n: int, experts: int, replay: int, live: int, rate: float, relay: bool) -> None:
    run = "bench" + uuid.uuid4().hex[:8]
    settings = Settings(service_name="ratings", kafka_bootstrap=KAFKA, mongo_uri=MONGO, mongo_db=f"{run}_ratings",
                        topic_prefix=f"{run}.", log_level="WARNING")
    svc = Service("ratings", title="bench", outbox=["radars"], produces=["ratings.events"], settings=settings,
                  honour_revocations=False)
    clock = Clock()
    single, batch = given_handlers(svc)
    consumer = svc.consume("ratings.events", single, batch=batch)
    topic = settings.topic("ratings.events")
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    await ensure_topics(settings, {"ratings.events"})
    await store.ensure_indexes(svc.db)
    rnd = random.Random(7)
    try:
        print(f"ratings bench: radars of {experts:,} experts holding {n:,} ratings; consumer batches of at most "
              f"{settings.consumer_batch_max}; kafka {KAFKA}, mongo {MONGO}")
        t = time.perf_counter()
        await load_radars(svc, n, experts, rnd)
        print(f"  radars loaded      {time.perf_counter() - t:>10,.1f} s   ({await svc.db.radars.count_documents({}):,} radars)")
        # replay: ratings given while the consumer was away
        now = datetime.now(UTC)
        backlog = [rating(i, experts, rnd, now) for i in range(replay)]
        for i in range(0, replay, 1000):
            await svc.db.owed.insert_many([dict(o) for o in backlog[i:i + 1000]])
        await produce(topic, [given(o) for o in backlog])
        baseline = await raw_consume(topic, replay) if replay else 0
        if replay:
            print(f"  raw Kafka consume  {baseline:>10,.0f} records/s   (baseline)")
        t = time.perf_counter()
        await svc.broker.start()
        if relay:
            svc.relay.start()
        else:  # isolates the radar writes from the relay's scans of the radars collection
            svc.relay.kick = lambda *a: None
        if replay:
            await clock.until([o["_id"] for o in backlog])
            took = time.perf_counter() - t
            print(f"  replay             {replay / took:>10,.0f} ratings/s   = 1/{baseline * took / replay:,.0f} of the "
                  f"baseline ({replay:,} ratings, {consumer.batches:,} batches)")
        # live: paced, each rating's owed document stored and then its event published, as the giving request does
        batches0, batched0 = consumer.batches, consumer.batched
        stream = [rating(replay + i, experts, rnd, datetime.now(UTC)) for i in range(live)]
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=1, acks="all")
        await producer.start()
        sent: dict[str, float] = {}
        try:
            start, futures = time.perf_counter(), []
            for k in range(0, live, 5):  # five at a time, as concurrent requests would
                chunk = stream[k:k + 5]
                await svc.db.owed.insert_many([dict(o) for o in chunk])
                for o in chunk:
                    env = given(o)
                    sent[o["_id"]] = env.occurred_at.timestamp()
                    futures.append(await producer.send(topic, env.model_dump_json().encode(), key=env.key.encode()))
                ahead = (k + 5) / rate - (time.perf_counter() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            offered = live / (time.perf_counter() - start)
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        await clock.until(list(sent))
        lags = [(clock.stored[i] - at) * 1000 for i, at in sent.items()]
        calls = consumer.batches - batches0
        print(f"  live lag event -> radar stored at {offered:,.0f}/s offered: p50 {pct(lags, 0.5):,.0f} ms, "
              f"p99 {pct(lags, 0.99):,.0f} ms, max {max(lags):,.0f} ms ({live:,} ratings in {calls:,} batches, "
              f"{(consumer.batched - batched0) / max(calls, 1):,.1f} per batch)")
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
        await admin.delete_topics([topic, settings.topic("ratings.events.dlq")])
        await admin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="ratings the radars already hold (default 100,000)")
    ap.add_argument("--full", action="store_true", help="1,000,000 ratings behind")
    ap.add_argument("--experts", type=int, default=10_000)
    ap.add_argument("--replay", type=int, default=10_000, help="ratings waiting when the consumer starts")
    ap.add_argument("--live", type=int, default=2_000, help="ratings in the paced live phase")
    ap.add_argument("--rate", type=float, default=275, help="ratings per second offered in the live phase")
    ap.add_argument("--no-relay", action="store_true", help="do not run the outbox relay (radar writes alone)")
    a = ap.parse_args()
    asyncio.run(main(1_000_000 if a.full else a.n, a.experts, a.replay, a.live, a.rate, not a.no_relay))
