"""Dispatch saga latency: request accepted → ReserveBudget on Kafka → simulated budget answer → approved
event, p50/p99 and throughput, next to a raw Kafka round trip (produce → responder → produce → consume)
measured in the same run on the same servers.

    uv run --frozen python bench/dispatch.py            # 200 dispatches, 8 in flight
    uv run --frozen python bench/dispatch.py --full     # 2,000 dispatches, 32 in flight
    uv run --frozen python bench/dispatch.py --history 200000   # the same with a year's finished dispatches behind

`--history N` writes N finished (paid) dispatches and their settled free-dispatch slots into the service's database
before timing: the saga's clocks (re-sends, slot reconciler, saga-state gauge) then run against a collection the size
of a national year's, not an empty one.

Uses KAFKA_BOOTSTRAP / MONGO_URI if set, else the test servers (Kafka 127.0.0.1:19092, MongoDB 37017).
"""
from __future__ import annotations

import argparse
from collections import defaultdict
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import uvloop  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from contracts import Envelope  # noqa: E402
from contracts.events.budget import BudgetReserved  # noqa: E402
from contracts.events.experts import ExpertChanged  # noqa: E402
from contracts.events.identity import BindingChanged  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402
from contracts.vocab import fiscal_year  # noqa: E402
from tests.support import Infra, Namespace, ServiceProcess, token  # noqa: E402

FY = fiscal_year(datetime.now(UTC) + timedelta(hours=9))
DAY = date(FY + 1, 2, 1)
STAFF = {"sub": "bench-staff", "roles": ["institution"],
         "orgs": [{"org_id": "inst-b", "platform_id": "plat-b", "member_role": "representative",
                   "rights": ["manage_budget", "request_dispatch", "recommend_experts", "joint_activities"]}]}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0.0 if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def local_servers(svc_pid: int) -> dict[str, int]:
    """The processes whose CPU the dispatches cost: the service, this bench (it shares the machine's cores), and the
    local Kafka and FerretDB when their pid files are in VAR_DIR/run (deploy/local's scripts write them)."""
    pids = {"service": svc_pid, "bench": os.getpid()}  # the bench: its HTTP client, simulated budget and watchers
    run = Path(os.environ.get("VAR_DIR", ROOT / "var" / "test")) / "run"
    for name, file in (("database", "mongo.pid"), ("kafka", "kafka.pid")):
        try:
            pids[name] = int((run / file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return pids


def summary(name: str, lat: list[float], wall: float) -> dict:
    return {"name": name, "n": len(lat), "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "mean_ms": statistics.fmean(lat) * 1e3, "per_s": len(lat) / wall}


async def consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                         group_id=None, fetch_max_wait_ms=5)
    await c.start()
    return c


async def raw_kafka_round_trip(bootstrap: str, ns: Namespace, n: int, inflight: int) -> dict:
    """Baseline: the two Kafka hops of the saga without any service: produce → responder → produce → consume."""
    ping, pong = ns.topic("bench.ping"), ns.topic("bench.pong")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(ping, 6, 1), NewTopic(pong, 6, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    cin, cout = await consumer(bootstrap, ping), await consumer(bootstrap, pong)
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    arrived: dict[str, asyncio.Event] = defaultdict(asyncio.Event)  # woken on arrival (polling would steal CPU)
    finished = asyncio.Event()

    async def responder():
        async for rec in cin:
            await producer.send_and_wait(pong, rec.value, key=rec.key)

    async def collector():
        async for rec in cout:
            k = rec.key.decode()
            if k in sent:
                done[k] = time.perf_counter() - sent[k]
                arrived[k].set()
            if len(done) == n:
                finished.set()

    tasks = [asyncio.create_task(responder()), asyncio.create_task(collector())]
    sem = asyncio.Semaphore(inflight)
    # Warm up: new topics need their leaders elected before a round trip means anything.
    warm = 0
    while True:
        sent[f"w{warm}"] = time.perf_counter()
        await producer.send_and_wait(ping, b"{}", key=f"w{warm}".encode())
        await asyncio.sleep(0.5)
        if f"w{warm}" in done:
            break
        warm += 1
    sent.clear(), done.clear()

    async def one(i: int):
        async with sem:
            k = f"k{i}"
            sent[k] = time.perf_counter()
            await producer.send_and_wait(ping, json.dumps({"i": i}).encode(), key=k.encode())
            await arrived[k].wait()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    await finished.wait()
    wall = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await cin.stop(), await cout.stop(), await producer.stop()
    return summary("raw Kafka round trip (2 hops)", list(done.values()), wall)


async def write_history(infra: Infra, ns: Namespace, n: int, like: dict) -> float:
    """N paid dispatches shaped like `like` (a dispatch the service wrote), each with its settled free-dispatch slot,
    written in bulk; returns the seconds it took."""
    db = AsyncMongoClient(infra.mongo)[ns.db("dispatch")]
    t0, at = time.perf_counter(), datetime.now(UTC) - timedelta(days=30)
    base = {k: v for k, v in like.items() if k not in ("_id", "_outbox", "_seen")}
    for lo in range(0, n, 2000):
        ids = range(lo, min(n, lo + 2000))
        await db.dispatches.insert_many([{**base, "_id": f"hist-{i}", "business_id": f"hist-biz-{i}", "status": "paid",
                                          "payment": {"paid_at": at, "amount": 50000}, "updated_at": at} for i in ids],
                                        ordered=False)
        await db.free_slots.insert_many([{"_id": f"hist-biz-{i}:{like['fiscal_year']}:1", "n": 1, "business_id": f"hist-biz-{i}",
                                          "fiscal_year": like["fiscal_year"], "dispatch_id": f"hist-{i}", "at": at,
                                          "settled": True} for i in ids], ordered=False)
    return time.perf_counter() - t0


async def dispatch_saga(infra: Infra, ns: Namespace, url: str, n: int, inflight: int,
                        pids: dict[str, int], history: int = 0) -> tuple[dict, ...]:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()

    async def publish(msg, wait: bool = True):
        env = Envelope.wrap(msg, producer="bench")
        sent = await producer.send(ns.topic(msg.topic), env.model_dump_json().encode(), key=msg.key().encode())
        if wait:
            await sent

    await publish(ExpertChanged(expert_id="ex-b", account_id="acct-ex-b", change="approved", status="registered",
                                registered_fiscal_year=FY, name="Bench expert"))
    # R-ID-07/08: route A needs the business's prime account (identity's BindingChanged) and the staff's token must
    # hold the business's delegation of 'dispatch:request' (one token per business, minted before timing starts).
    for i in range(-1, n):  # handed to the producer in order, acknowledged together
        await publish(BindingChanged(business_id=f"bench-biz-{i}", account_id=f"acct-bench-{i}", role="prime"),
                      wait=False)
    await producer.flush()
    people = AsyncMongoClient(infra.mongo)[ns.db("dispatch")].business_people
    while await people.count_documents({}) < n + 1:
        await asyncio.sleep(0.5)
    tokens = {i: token(ttl=3600, **STAFF, dlg=[{"id": f"dlg-{i}", "business_id": f"bench-biz-{i}", "org_id": "inst-b",
                                                "scopes": ["dispatch:request"], "exp": int(time.time()) + 3600}])
              for i in range(-1, n)}
    commands, events = await consumer(infra.kafka, ns.topic("budget.commands")), await consumer(infra.kafka, ns.topic("dispatch.events"))
    sent: dict[str, float] = {}
    approved_at: dict[str, float] = {}
    arrived: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
    reserve_seen: dict[str, float] = {}
    http_ms: list[float] = []

    async def budget():  # the simulated budget service: every reservation is granted at once
        async for rec in commands:
            env = json.loads(rec.value)
            if env["event_type"] == "budget.ReserveBudget":
                c = env["payload"]
                reserve_seen[c["dispatch_id"]] = time.perf_counter()
                await publish(BudgetReserved(frame_id=c["frame_id"], dispatch_id=c["dispatch_id"], command_id=c["command_id"],
                                             member_id=c["member_id"], amount=c["fee"] + c["travel"]), wait=False)

    async def watch():
        async for rec in events:
            env = json.loads(rec.value)
            p = env["payload"]
            if env["event_type"] == "dispatch.DispatchStatusChanged" and p["status"] == "approved":
                approved_at.setdefault(p["dispatch_id"], time.perf_counter())  # may come before the POST's reply
                arrived[p["dispatch_id"]].set()

    tasks = [asyncio.create_task(budget()), asyncio.create_task(watch())]
    def auth(i: int) -> dict:
        return {"authorization": f"Bearer {tokens[i]}"}

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        # Warm up: the service's consumers must have joined before timing starts.
        for attempt in range(120):
            r = await http.post("/requests", json=body(-1), headers=auth(-1))
            if r.json().get("status") == "accepted":
                break
            await asyncio.sleep(0.5)
        else:
            raise SystemExit(f"warm-up request never accepted: {r.status_code} {r.text[:500]}")
        if history:
            like = await AsyncMongoClient(infra.mongo)[ns.db("dispatch")].dispatches.find_one({"_id": r.json()["dispatch_id"]})
            print(f"history: {history:,} paid dispatches written in {await write_history(infra, ns, history, like):.1f} s")
        # one connection per dispatch in flight, on aiohttp: the bench shares the machine's cores with the service,
        # and httpx's client cost about twice the CPU per request (its pool, checked on every request, and its
        # pure-Python HTTP/1.1 parser)
        sessions = [aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=1),
                                          timeout=aiohttp.ClientTimeout(total=30)) for _ in range(inflight)]
        todo = iter(range(n))

        async def worker(session: aiohttp.ClientSession):
            for i in todo:
                t = time.perf_counter()
                async with session.post("/requests", json=body(i), headers=auth(i)) as r:
                    d = await r.json()
                http_ms.append(time.perf_counter() - t)
                assert d["status"] in ("accepted", "reserved", "approved"), d  # the saga may finish before the reply
                sent[d["dispatch_id"]] = t
                await arrived[d["dispatch_id"]].wait()

        cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in sessions))
        wall = time.perf_counter() - t0
        cpu = {k: (cpu_seconds(pid) - cpu0[k]) / n * 1e3 for k, pid in pids.items()}
        for s in sessions:
            await s.close()
    for t in tasks:
        t.cancel()
    await commands.stop(), await events.stop(), await producer.stop()
    approved = {d: approved_at[d] - t for d, t in sent.items()}
    to_reserve = [reserve_seen[d] - sent[d] for d in approved if d in reserve_seen]
    to_approved = [approved_at[d] - reserve_seen[d] for d in approved if d in reserve_seen]
    return (summary("dispatch: request → reserve → answer → approved", list(approved.values()), wall),
            summary("  of which POST /requests response", http_ms, wall),
            summary("  of which request → ReserveBudget seen", to_reserve, wall),
            summary("  of which ReserveBudget → approved seen", to_approved, wall), cpu)


def body(i: int) -> dict:
    return {"business_id": f"bench-biz-{i}", "business_account_id": f"acct-bench-{i}", "expert_id": "ex-b",
            "institution_id": "inst-b", "issue": "A clear management issue that needs a specialist's knowledge.",
            "beyond_self_help": True, "needs_specialist": True, "planned_visits": [{"day": DAY.isoformat(), "hours": 2}]}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("-n", type=int)
    ap.add_argument("--inflight", type=int)
    ap.add_argument("--history", type=int, default=0, help="finished dispatches in the database before timing")
    a = ap.parse_args()
    n = a.n or (2000 if a.full else 200)
    inflight = a.inflight or (32 if a.full else 8)
    infra = Infra(os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"), os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017"), "bench")
    ns = Namespace()
    # spans go nowhere, as in the other benches: deployed services batch them to a collector off the event loop (the
    # tests' span file is written span by span)
    svc = ServiceProcess("dispatch", infra, ns, Path(tempfile.mkdtemp()), OUTBOX_POLL_SECONDS="0.5",
                         LOG_LEVEL="WARNING", OTEL_SPANS_FILE=os.environ.get("BENCH_SPANS_FILE", ""))
    try:
        svc.start()
        raw = await raw_kafka_round_trip(infra.kafka, ns, n, inflight)
        saga, *parts, cpu = await dispatch_saga(infra, ns, svc.url, n, inflight, local_servers(svc.proc.pid), a.history)
    finally:
        svc.stop()
    print(f"n={n} in flight={inflight} history={a.history:,}")
    for s in (raw, saga, *parts):
        print(f"{s['name']:<52} p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  {s['per_s']:7.1f}/s")
    print(f"saga / raw Kafka: p50 ×{saga['p50_ms'] / raw['p50_ms']:.1f}, p99 ×{saga['p99_ms'] / raw['p99_ms']:.1f}, "
          f"throughput ×{saga['per_s'] / raw['per_s']:.2f}")
    # CPU time per dispatch while timing (the follow-on consumers that lag behind the burst are partly outside it):
    # steadier than the rate from run to run, which swings with what else the machine's cores are doing
    print("CPU per dispatch while timing: " + ", ".join(f"{k} {v:.1f} ms" for k, v in cpu.items()))


if __name__ == "__main__":
    uvloop.run(main())  # the services' loop too (uvicorn picks uvloop): the bench's own share of the cores kept small
