"""Bulk onboarding at the design's scale (issue 22 acceptance, R-OPS-03): 1,000,000 businesses with three periods of
financials and 10,000 experts imported from `bench/dataset.py` files, the business import killed once mid-way
(SIGKILL) and resumed; then every count is checked against the file itself.

    uv run python bench/onboarding.py --businesses 1000000 --experts 10000 --data var/data

Environment as the services' (MONGO_URI, KAFKA_BOOTSTRAP); each run writes to its own databases and topics
(`bench_onb_<run>_identity`, `bench-onb-<run>-…`) so its counts are exact. The indexes are the services' own
(`identity_service.app.ensure_indexes`, the experts store's), made before the import as a running service makes them.

Printed next to a baseline from the same run: the store alone taking the same documents (`insert_many` of 1,000 into
a collection with the same indexes, no validation, no events, no audit) and raw Kafka taking the same events.

Checked after the import (asserts, so a loss or a duplicate fails the bench): the business ids in the database are
exactly the ids of the rows the route's rules accept, one document each; two audit entries per business; on the topic
both events of every imported business, and no other business; every refused row once in the rejected file.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts.events.identity import BusinessProfileChanged, BusinessRegistered
from contracts.vocab import fiscal_year
from experts_service.store import Store as ExpertsStore
from identity_service import bulk_import as bi
from identity_service.app import ensure_indexes as identity_indexes

ROOT = Path(__file__).resolve().parent.parent
MONGO = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017")
KAFKA = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def dataset(data: Path, businesses: int, experts: int, seed: int) -> tuple[Path, Path]:
    b, e = data / "businesses.jsonl", data / "experts.jsonl"
    stamp = data / "dataset.json"
    want = {"businesses": businesses, "experts": experts, "seed": seed}
    if not (b.exists() and e.exists() and stamp.exists() and json.loads(stamp.read_text()) == want):
        subprocess.run([sys.executable, str(ROOT / "bench/dataset.py"), "--businesses", str(businesses), "--experts",
                        str(experts), "--seed", str(seed), "--out", str(data)], check=True)
        stamp.write_text(json.dumps(want))
    return b, e


def fresh_copy(src: Path, run: str) -> Path:
    """The import keeps its progress next to its file: each run imports its own copy (a hard link)."""
    dst = src.with_name(f"{src.stem}.{run}{src.suffix}")
    os.link(src, dst)
    return dst


def run_import(module: str, kind: str, path: Path, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, kind, str(path), "--operator", "op-bench"], env=env, cwd=ROOT,
                            **popen)


async def baseline(db, docs: list[dict], events: list, topic: str) -> tuple[float, float]:
    """Documents/s of the store alone (same documents, same indexes) and events/s of raw Kafka (same records)."""
    await identity_indexes(db)
    t = time.perf_counter()
    for i in range(0, len(docs), 1000):
        await db.businesses.insert_many(docs[i:i + 1000], ordered=False)
    store_rate = len(docs) / (time.perf_counter() - t)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=262144)
    await producer.start()
    try:
        t = time.perf_counter()
        await asyncio.gather(*[await producer.send(topic, env.model_dump_json().encode(), key=env.key.encode())
                               for env in events])
        kafka_rate = len(events) / (time.perf_counter() - t)
    finally:
        await producer.stop()
    return store_rate, kafka_rate


async def topic_ids(topic: str, want: int) -> dict[str, set[str]]:
    """Business ids per event type on the topic, read from the start until `want` records or 60 s of nothing new."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    kinds: dict[str, set[str]] = {}
    seen, idle = 0, time.monotonic()
    try:
        while seen < want and time.monotonic() - idle < 60:
            got = await consumer.getmany(timeout_ms=1000, max_records=20000)
            for recs in got.values():
                for r in recs:
                    env = json.loads(r.value)
                    kinds.setdefault(env["event_type"], set()).add(env["payload"]["business_id"])
                    seen += 1
                idle = time.monotonic()
    finally:
        await consumer.stop()
    return kinds


async def import_businesses(a, bfile: Path, run: str, env: dict, ident_db: str) -> tuple[Path, float]:
    """The business import, killed once mid-way (SIGKILL) and started again; returns its file and wall time."""
    path = fresh_copy(bfile, run)
    progress = path.with_name(path.name + ".progress")
    total = sum(1 for _ in path.open(encoding="utf-8"))
    t0 = time.perf_counter()
    first = run_import("identity_service.bulk_import", "businesses", path, {**env, "MONGO_DB": ident_db},
                       stderr=subprocess.DEVNULL)
    while not (progress.exists() and json.loads(progress.read_text())["line"] >= a.kill_at * total):
        assert first.poll() is None, "the import ended before it could be killed"
        await asyncio.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = json.loads(progress.read_text())["line"]
    print(f"killed (SIGKILL) after {time.perf_counter() - t0:.1f} s at line {killed_at:,} of {total:,}", flush=True)
    second = run_import("identity_service.bulk_import", "businesses", path, {**env, "MONGO_DB": ident_db},
                        stderr=subprocess.PIPE, text=True)
    _, err = second.communicate()
    assert second.returncode == 0, err[-2000:]
    elapsed = time.perf_counter() - t0
    print("resumed: " + next(line for line in err.splitlines() if line.startswith("imported ")), flush=True)
    return path, elapsed


async def check_businesses(client, path: Path, prefix: str, ident_db: str) -> str:
    """Asserts the import against its file (see the module's docstring); returns what was checked."""
    today_fy = fiscal_year(date.today())
    expected, bad = set(), Counter()
    for n, row in bi.rows(path):
        data, why = bi.check(row, today_fy)
        if why:
            bad[n] += 1
        else:
            expected.add(bi.business_id(row))
    db = client[ident_db]
    ids = [d["_id"] async for d in db.businesses.find({}, {"_id": 1})]
    assert len(ids) == len(set(ids)) == len(expected), (len(ids), len(set(ids)), len(expected))
    assert set(ids) == expected, "the database holds other businesses than the file's accepted rows"
    del ids
    # the audit entries by id (streamed: a count over millions of documents is an aggregation the local server
    # holds in memory), each the entry of one of the two events of an imported business
    event_ids = {str(uuid.uuid5(bi.IMPORT_NS, f"{b}:{m.message_type}"))
                 for b in expected for m in (BusinessRegistered, BusinessProfileChanged)}
    audit = [d["_id"] async for d in db.audit.find({}, {"_id": 1})]
    assert len(audit) == len(set(audit)) and set(audit) == event_ids, (len(audit), len(event_ids))
    kinds = await topic_ids(f"{prefix}identity.events", 2 * len(expected))
    assert kinds.get("identity.BusinessRegistered") == kinds.get("identity.BusinessProfileChanged") == expected, \
        {k: len(v) for k, v in kinds.items()}
    rejected = Counter(json.loads(x)["line"] for x in path.with_name(path.name + ".rejected.jsonl").open())
    assert rejected == bad, "refused rows missing from the rejected file, or listed twice"
    return (f"{len(expected):,} businesses once each (= the file's accepted rows), {len(audit):,} audit entries "
            f"(both events of each), both events of each on the topic; {sum(bad.values()):,} refused rows each "
            "reported once")


async def import_experts(a, efile: Path, run: str, env: dict, experts_db: str, client) -> float:
    t1 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "experts_service.bulk_import", "experts", str(fresh_copy(efile, run)),
                           "--operator", "op-bench"], env={**env, "MONGO_DB": experts_db}, cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    elapsed = time.perf_counter() - t1
    experts = await client[experts_db].experts.count_documents({})
    said = re.search(r"imported ([\d,]+) experts .*, rejected ([\d,]+) rows", done.stderr)
    imported, refused = (int(x.replace(",", "")) for x in said.groups())
    assert experts == imported and imported + refused == a.experts, done.stderr[-500:]
    print(f"experts: {a.experts:,} rows in {elapsed:.1f} s ({a.experts / elapsed:,.0f} rows/s), {experts:,} pages "
          f"({refused:,} refused)", flush=True)
    return elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--businesses", type=int, default=1_000_000)
    ap.add_argument("--experts", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--data", type=Path, default=ROOT / "var/data")
    ap.add_argument("--kill-at", type=float, default=0.5, help="fraction of the file reached when the import is killed")
    ap.add_argument("--baseline", type=int, default=20_000, help="documents the store-alone baseline inserts")
    ap.add_argument("--check-run", help="only check the businesses of an earlier run (its id, as its databases name)")
    a = ap.parse_args()
    a.data.mkdir(parents=True, exist_ok=True)
    bfile, efile = dataset(a.data, a.businesses, a.experts, a.seed)
    run = a.check_run or time.strftime("%Y%m%d%H%M%S")
    prefix, ident_db = f"bench-onb-{run}-", f"bench_onb_{run}_identity"
    experts_db = f"bench_onb_{time.strftime('%Y%m%d%H%M%S')}_experts"
    env = {**os.environ, "MONGO_URI": MONGO, "KAFKA_BOOTSTRAP": KAFKA, "TOPIC_PREFIX": prefix}
    client = AsyncMongoClient(MONGO)
    try:
        if a.check_run:
            path = bfile.with_name(f"{bfile.stem}.{run}{bfile.suffix}")
            print(f"checked: {await check_businesses(client, path, prefix, ident_db)}", flush=True)
            return
        # the baseline: the first rows' documents and events, straight into the store and onto Kafka
        convert = bi.converter("op-bench")
        sample = [got for _, (_, row) in zip(range(a.baseline), bi.rows(bfile)) if not isinstance(got := convert(row), str)]
        store_rate, kafka_rate = await baseline(client[f"bench_onb_{run}_baseline"], [d for d, _ in sample],
                                                [e for _, evs in sample for e in evs], f"{prefix}baseline")
        print(f"baseline: the store alone {store_rate:,.0f} documents/s ({len(sample):,} documents, identity's indexes);"
              f" raw Kafka {kafka_rate:,.0f} events/s", flush=True)
        await identity_indexes(client[ident_db])
        await ExpertsStore(SimpleNamespace(db=client[experts_db])).ensure_indexes()
        path, elapsed = await import_businesses(a, bfile, run, env, ident_db)
        experts_elapsed = await import_experts(a, efile, run, env, experts_db, client)
        t = time.perf_counter()
        checked = await check_businesses(client, path, prefix, ident_db)
        print(f"checked in {time.perf_counter() - t:.0f} s: {checked}", flush=True)
        rate = a.businesses / elapsed
        print(f"RESULT businesses: {a.businesses:,} rows in {elapsed:.1f} s = {elapsed / 60:.1f} min including the kill "
              f"and the restart ({rate:,.0f} rows/s; {rate / store_rate:.2f}x the store alone, events at "
              f"{2 * rate / kafka_rate:.3f}x raw Kafka's rate); with the experts {(elapsed + experts_elapsed) / 60:.1f} "
              f"min; target <= 20 min: {'met' if elapsed + experts_elapsed <= 1200 else 'NOT met'}")
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
