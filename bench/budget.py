"""Benchmark of the budget service: ReserveBudget round trip (published → answer consumed) one at a time and at
an offered rate (default 100/s), and sustained reservations per second against one frame, next to the raw Kafka
produce → consume round trip measured in the same run and way.

    uv run --frozen python bench/budget.py            # modest: 200 sequential, 500 at 100/s, 1,000 sustained
    uv run --frozen python bench/budget.py --full     # 1,000 sequential, 3,000 at 100/s, 10,000 sustained
    uv run --frozen python bench/budget.py --compare  # also the service with batches of one (CONSUMER_BATCH_MAX=1)

Starts the budget service itself (as tests do) against KAFKA_BOOTSTRAP (default 127.0.0.1:19092) and
MONGO_URI (default mongodb://127.0.0.1:37017), in its own topic prefix and database.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from contracts import Envelope  # noqa: E402
from contracts.events.budget import ReserveBudget, frame_id  # noqa: E402
from tests.integration.budget_helpers import BUREAU, REP, register_platform  # noqa: E402
from tests.support import Infra, Namespace, ServiceProcess, token  # noqa: E402

KAFKA = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
MONGO = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017")
PLATFORM = "pf-bench"
FID = frame_id(2026, PLATFORM)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Follower:
    """Reads a topic from the start; records when each key (or dispatch id) first arrived."""

    def __init__(self, topic: str, field: str | None):
        self.topic, self.field = topic, field
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future] = {}

    async def start(self):
        self.consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest",
                                         enable_auto_commit=False, group_id=None, fetch_max_wait_ms=10)
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def _run(self):
        while True:
            batch = await self.consumer.getmany(timeout_ms=50)
            t = time.perf_counter()
            for recs in batch.values():
                for r in recs:
                    k = json.loads(r.value)["payload"].get(self.field) if self.field else r.key.decode()
                    if k and k not in self.arrived:
                        self.arrived[k] = t
                        f = self.waiters.pop(k, None)
                        if f and not f.done():
                            f.set_result(t)

    async def wait(self, key: str, timeout: float = 30) -> float:
        if key in self.arrived:
            return self.arrived[key]
        f = asyncio.get_running_loop().create_future()
        self.waiters[key] = f
        return await asyncio.wait_for(f, timeout)

    async def stop(self):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def paced(producer, topic: str, follower: "Follower", n: int, rate: float, message) -> list[float]:
    """Latencies of `n` messages published at `rate` per second (each one's clock starts when it is sent)."""
    started: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        name, value, key = message(i)
        started[name] = time.perf_counter()
        await producer.send(topic, value, key=key)
    return [await follower.wait(name, 120) - t for name, t in started.items()]


async def kafka_baseline(ns: Namespace, sequential: int, sustained: int, n_paced: int = 0,
                         rate: float = 100) -> tuple[list[float], float, list[float]]:
    """Raw Kafka: produce one message, consume it (same client settings as the reservation run)."""
    topic = ns.topic("bench.raw")
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    await admin.close()
    follower = Follower(topic, None)
    await follower.start()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        lat = []
        for i in range(sequential):
            t = time.perf_counter()
            await producer.send_and_wait(topic, b'{"payload": {}}', key=f"seq-{i}".encode())
            lat.append(await follower.wait(f"seq-{i}") - t)
        at_rate = await paced(producer, topic, follower, n_paced, rate,
                              lambda i: (f"paced-{i}", b'{"payload": {}}', f"paced-{i}".encode()))
        t = time.perf_counter()
        futures = [await producer.send(topic, b'{"payload": {}}', key=f"bulk-{i}".encode()) for i in range(sustained)]
        await asyncio.gather(*futures)
        for i in range(sustained):
            await follower.wait(f"bulk-{i}", 120)
        return lat, sustained / (time.perf_counter() - t), at_rate
    finally:
        await producer.stop()
        await follower.stop()


async def budget_run(svc: ServiceProcess, ns: Namespace, sequential: int, sustained: int, n_paced: int = 0,
                     rate: float = 100) -> tuple[list[float], float, list[float]]:
    per = 30_000
    # the bureau allocates only to a platform identity announced, of its own block (R-PF-05)
    await register_platform(Infra(KAFKA, MONGO, "bench"), ns, PLATFORM, block=BUREAU)
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
        r = await http.post("/frames", json={"fiscal_year": 2026, "platform_id": PLATFORM, "representative_id": REP,
                                             "fee": per * (sequential + sustained + n_paced) * 2, "travel": 0},
                            headers={"authorization": f"Bearer {token(sub='bench', roles=['bureau'], bureau_id=BUREAU)}"})
        r.raise_for_status()
    follower = Follower(ns.topic("budget.events"), "dispatch_id")
    await follower.start()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all")
    await producer.start()
    topic = ns.topic("budget.commands")

    def message(name: str) -> tuple[bytes, bytes]:
        cmd = ReserveBudget(command_id=f"c-{name}", frame_id=FID, dispatch_id=name, member_id=REP, fee=per, travel=0)
        return Envelope.wrap(cmd, producer="bench").model_dump_json().encode(), cmd.key().encode()

    try:
        lat = []
        for i in range(sequential):
            value, key = message(f"seq-{i}")
            t = time.perf_counter()
            await producer.send_and_wait(topic, value, key=key)
            lat.append(await follower.wait(f"seq-{i}") - t)
        at_rate = await paced(producer, topic, follower, n_paced, rate, lambda i: (f"paced-{i}", *message(f"paced-{i}")))
        t = time.perf_counter()
        futures = []
        for i in range(sustained):
            value, key = message(f"bulk-{i}")
            futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
        for i in range(sustained):
            await follower.wait(f"bulk-{i}", 600)
        return lat, sustained / (time.perf_counter() - t), at_rate
    finally:
        await producer.stop()
        await follower.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequential", type=int, default=200, help="round trips measured one at a time")
    ap.add_argument("--paced", type=int, default=500, help="reservations published at --rate per second")
    ap.add_argument("--rate", type=float, default=100, help="offered rate of the paced phase")
    ap.add_argument("--sustained", type=int, default=1000, help="reservations published at once")
    ap.add_argument("--full", action="store_true", help="1,000 sequential, 3,000 paced and 10,000 sustained")
    ap.add_argument("--compare", action="store_true", help="also run the service with batches of one message")
    a = ap.parse_args()
    if a.full:
        a.sequential, a.paced, a.sustained = 1000, 3000, 10_000
    print(f"kafka={KAFKA} mongo={MONGO} sequential={a.sequential} paced={a.paced} at {a.rate:g}/s "
          f"sustained={a.sustained}")
    rows = []
    ns = Namespace()
    rows.append(("raw Kafka produce→consume", *await kafka_baseline(ns, a.sequential, a.sustained, a.paced, a.rate)))
    # as deployed: spans to OTLP in batches, if at all, not the tests' span file written span by span
    quiet = {"OTEL_SPANS_FILE": os.environ.get("BENCH_SPANS_FILE", ""), "LOG_LEVEL": "WARNING"}
    runs = [("ReserveBudget → answer", quiet)]
    if a.compare:
        runs.insert(0, ("… batches of one (before)", {**quiet, "CONSUMER_BATCH_MAX": "1"}))
    for label, env in runs:
        ns = Namespace()
        with tempfile.TemporaryDirectory() as tmp:
            svc = ServiceProcess("budget", Infra(KAFKA, MONGO, "bench"), ns, Path(tmp), **env).start()
            try:
                rows.append((label, *await budget_run(svc, ns, a.sequential, a.sustained, a.paced, a.rate)))
            finally:
                svc.stop()
    ms = lambda v: f"{v * 1000:9.1f}"  # noqa: E731
    print(f"{'':28}{'one at a time (ms)':>20}{f'at {a.rate:g}/s offered (ms)':>26}{'sustained':>12}")
    print(f"{'':28}{'p50':>10}{'p99':>10}{'p50':>13}{'p99':>13}{'per second':>12}")
    for label, lat, rate, at_rate in rows:
        print(f"{label:28}{ms(pct(lat, 50))} {ms(pct(lat, 99))}{ms(pct(at_rate, 50)):>13}{ms(pct(at_rate, 99)):>13}"
              f"{rate:12.0f}")
    _, k_lat, k_rate, k_paced = rows[0]
    for label, lat, rate, at_rate in rows[1:]:
        print(f"{label}: p99 at {a.rate:g}/s ×{pct(at_rate, 99) / pct(k_paced, 99):.1f} raw Kafka's (target ≤ ×10), "
              f"one at a time p99 ×{pct(lat, 99) / pct(k_lat, 99):.1f}, {rate:,.0f} reservations/s against one frame "
              f"(target ≥ 1,000; raw Kafka {k_rate:,.0f}/s)")


if __name__ == "__main__":
    asyncio.run(main())
