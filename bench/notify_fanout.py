"""Benchmark of a programme push's fan-out in the notifications service (issue 22: a new programme matching ~20% of
1,000,000 businesses, i.e. ~200,000 inboxes, within 10 minutes = ≥ 333 inbox items/s sustained).

Preloads N businesses with one person each (the `parties`, `accounts` and `contacts` read models, as identity's
events leave them; each person takes programme news in the daily digest, as most would), publishes N `Notify`
commands for those businesses at once (as recommend's push does, deterministic ids) and times from the first publish
until all N inbox items exist, once with batches of one (`CONSUMER_BATCH_MAX=1`: the path one command at a time,
before) and once with the default batches (up to 200 per poll), in the same run.

    uv run --frozen python bench/notify_fanout.py                          # 20,000 after, 2,000 before
    uv run --frozen python bench/notify_fanout.py --n 50000 --before-n 5000
    uv run --frozen python bench/notify_fanout.py --email-share 0.5        # half the people get an e-mail each

Starts the notifications service itself (as tests do) against KAFKA_BOOTSTRAP (default 127.0.0.1:19092) and
MONGO_URI (default mongodb://127.0.0.1:37017), in its own topic prefix and database (dropped afterwards). People
outside the digest share get an e-mail delivery each; SMTP points at a port where nothing listens, with a long
backoff, so the deliverer's attempts stay few.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402

from contracts import Envelope  # noqa: E402
from contracts.events.notifications import Notify  # noqa: E402
from tests.support import Infra, Namespace, ServiceProcess, free_port  # noqa: E402

KAFKA = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
MONGO = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017")
CHUNK = 1000


async def preload(db, n: int, email_share: float) -> None:
    """N businesses `bz-i`, each with one person `acc-i`; the first `email_share` of them without a contact
    document (e-mail, the default), the others with programme news in the daily digest."""
    emails = int(n * email_share)
    for start in range(0, n, CHUNK):
        idx = range(start, min(n, start + CHUNK))
        await db.parties.insert_many([{"_id": f"business:bz-{i}", "account_ids": [f"acc-{i}"]} for i in idx])
        await db.accounts.insert_many([{"_id": f"acc-{i}", "kind": "business", "email": f"acc-{i}@example.jp"}
                                       for i in idx])
        contacts = [{"_id": f"acc-{i}", "digest": ["programme"]} for i in idx if i >= emails]
        if contacts:
            await db.contacts.insert_many(contacts)


async def run(label: str, n: int, email_share: float, env: dict) -> dict:
    ns, infra = Namespace(), Infra(KAFKA, MONGO, "bench")
    db = AsyncMongoClient(MONGO)[ns.db("notifications")]
    t0 = time.perf_counter()
    await preload(db, n, email_share)
    print(f"[{label}] preloaded {n:,} businesses in {time.perf_counter() - t0:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        svc = ServiceProcess("notifications", infra, ns, Path(tmp), SMTP_HOST="127.0.0.1", SMTP_PORT=str(free_port()),
                             SMTP_BACKOFF_SECONDS="3600", **env).start()
        try:
            producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=5, acks="all", enable_idempotence=True)
            await producer.start()
            topic = ns.topic("notifications.commands")
            started = time.perf_counter()
            last_of: dict[int, int] = {}  # partition -> the last business published on it
            try:
                sent = []
                for i in range(n):
                    c = Notify(notification_id=f"prog-bench:bz-{i}", recipient_id=f"bz-{i}", recipient_kind="business",
                               template="programme_recommended",
                               params={"programme_id": "prog-bench", "business_id": f"bz-{i}", "title": "事業承継補助金"})
                    env_ = Envelope.wrap(c, producer="recommend")
                    sent.append((i, await producer.send(topic, env_.model_dump_json().encode(), key=c.key().encode())))
                await producer.flush()
                for i, fut in sent:
                    last_of[(await fut).partition] = i
            finally:
                await producer.stop()
            published = time.perf_counter() - started
            print(f"[{label}] published {n:,} Notify in {published:.1f} s", flush=True)
            # Done when the last command of each partition has its inbox item (a partition is applied in order);
            # progress from a sample of 200 items; both `_id: {$in}` lookups (a count would scan the collection
            # and slow the service down: FerretDB).
            item = lambda i: f"notify:prog-bench:bz-{i}:acc-{i}"  # noqa: E731
            lasts = [item(i) for i in last_of.values()]
            sample = [item(i) for i in range(0, n, max(1, n // 200))]
            done = False
            while not done:
                await asyncio.sleep(1)
                done = await db.inbox.count_documents({"_id": {"$in": lasts}}) == len(lasts)
                seen = await db.inbox.count_documents({"_id": {"$in": sample}})
                print(f"[{label}] ~{seen / len(sample):.0%} at {time.perf_counter() - started:.0f} s", flush=True)
            elapsed = time.perf_counter() - started
            items = await db.inbox.count_documents({})
            assert items == n, f"{items} inbox items for {n} commands"
            deliveries = await db.deliveries.count_documents({})
            digests = await db.digests.count_documents({})
            follows = await db.follows.count_documents({})
        finally:
            svc.stop()
    await ns.drop(infra)
    return {"label": label, "n": n, "elapsed": elapsed, "rate": n / elapsed, "published": published,
            "deliveries": deliveries, "digests": digests, "follows": follows}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="businesses (one Notify each) with batches")
    ap.add_argument("--before-n", type=int, default=2_000, help="businesses with batches of one (0: skip)")
    ap.add_argument("--email-share", type=float, default=0.0, help="share of people getting an e-mail each")
    a = ap.parse_args()
    print(f"kafka={KAFKA} mongo={MONGO} load={os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    if a.before_n:
        rows.append(await run("batches of one (before)", a.before_n, a.email_share, {"CONSUMER_BATCH_MAX": "1"}))
    rows.append(await run("batches of ≤ 200", a.n, a.email_share, {}))
    print(f"load={os.getloadavg()[0]:.1f}")
    print(f"{'':26}{'N':>9}{'seconds':>10}{'inbox/s':>9}{'deliveries':>12}{'digests':>9}{'follows':>9}")
    for r in rows:
        print(f"{r['label']:26}{r['n']:>9,}{r['elapsed']:>10.1f}{r['rate']:>9.0f}{r['deliveries']:>12,}"
              f"{r['digests']:>9,}{r['follows']:>9,}")
    for r in rows:
        print(f"{r['label']}: 200,000 inboxes would take ~{200_000 / r['rate'] / 60:.1f} min at this rate "
              f"(extrapolated; target ≤ 10 min = ≥ 333/s)")


if __name__ == "__main__":
    asyncio.run(main())
