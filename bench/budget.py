"""Benchmark of the budget service: ReserveBudget round trip (published → answer consumed) and sustained
reservations per second, next to the raw Kafka produce → consume round trip measured in the same run.

    uv run --frozen python bench/budget.py            # modest: 200 sequential, 1,000 sustained
    uv run --frozen python bench/budget.py --full     # 1,000 sequential, 10,000 sustained

Starts the budget service itself (as tests do) against KAFKA_BOOTSTRAP (default 127.0.0.1:19092) and
MONGO_URI (default mongodb://127.0.0.1:37017), in its own topic prefix and database.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
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


async def kafka_baseline(ns: Namespace, sequential: int, sustained: int) -> tuple[list[float], float]:
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
        t = time.perf_counter()
        futures = [await producer.send(topic, b'{"payload": {}}', key=f"bulk-{i}".encode()) for i in range(sustained)]
        await asyncio.gather(*futures)
        for i in range(sustained):
            await follower.wait(f"bulk-{i}", 120)
        return lat, sustained / (time.perf_counter() - t)
    finally:
        await producer.stop()
        await follower.stop()


async def budget_run(svc: ServiceProcess, ns: Namespace, sequential: int, sustained: int) -> tuple[list[float], float]:
    per = 30_000
    # the bureau allocates only to a platform identity announced, of its own block (R-PF-05)
    await register_platform(Infra(KAFKA, MONGO, "bench"), ns, PLATFORM, block=BUREAU)
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
        r = await http.post("/frames", json={"fiscal_year": 2026, "platform_id": PLATFORM, "representative_id": REP,
                                             "fee": per * (sequential + sustained) * 2, "travel": 0},
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
        t = time.perf_counter()
        futures = []
        for i in range(sustained):
            value, key = message(f"bulk-{i}")
            futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
        for i in range(sustained):
            await follower.wait(f"bulk-{i}", 600)
        return lat, sustained / (time.perf_counter() - t)
    finally:
        await producer.stop()
        await follower.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequential", type=int, default=200, help="round trips measured one at a time")
    ap.add_argument("--sustained", type=int, default=1000, help="reservations published at once")
    ap.add_argument("--full", action="store_true", help="1,000 sequential and 10,000 sustained")
    a = ap.parse_args()
    if a.full:
        a.sequential, a.sustained = 1000, 10_000
    ns = Namespace()
    print(f"kafka={KAFKA} mongo={MONGO} namespace={ns.id} sequential={a.sequential} sustained={a.sustained}")
    with tempfile.TemporaryDirectory() as tmp:
        svc = ServiceProcess("budget", Infra(KAFKA, MONGO, "bench"), ns, Path(tmp)).start()
        try:
            k_lat, k_rate = await kafka_baseline(ns, a.sequential, a.sustained)
            b_lat, b_rate = await budget_run(svc, ns, a.sequential, a.sustained)
        finally:
            svc.stop()
    ms = lambda v: f"{v * 1000:7.1f} ms"  # noqa: E731
    print(f"{'':28}{'p50':>10}{'p99':>10}{'mean':>10}{'per second':>14}")
    print(f"{'raw Kafka produce→consume':28}{ms(pct(k_lat, 50))}{ms(pct(k_lat, 99))}"
          f"{ms(statistics.mean(k_lat))}{k_rate:14.0f}")
    print(f"{'ReserveBudget → answer':28}{ms(pct(b_lat, 50))}{ms(pct(b_lat, 99))}"
          f"{ms(statistics.mean(b_lat))}{b_rate:14.0f}")
    print(f"ratio reservation/Kafka: p50 ×{pct(b_lat, 50) / pct(k_lat, 50):.1f}, p99 ×{pct(b_lat, 99) / pct(k_lat, 99):.1f}, "
          f"throughput ×{b_rate / k_rate:.5f} (raw Kafka moves {k_rate / b_rate:,.0f}× more messages per second)")


if __name__ == "__main__":
    asyncio.run(main())
