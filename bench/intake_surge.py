"""Deadline-surge benchmark of application intake (R-POR-05, issue 19): N businesses (2,000 by default) each upload a
small attachment and submit in the last minute before a programme's deadline, against a running recommend service.
Every one must be accepted with its receipt (accepted_at = arrival time, at or before the deadline), none lost: the
counts are asserted in the database and on Kafka (ApplicationSubmitted events and Notify commands), figures printed.

    uv run --frozen python bench/intake_surge.py               # 2,000 submissions in a 60 s window
    uv run --frozen python bench/intake_surge.py --n 200 --window 20

Starts the recommend service itself (as tests do) against KAFKA_BOOTSTRAP and MONGO_URI, in its own topic prefix and
database. The businesses' profiles are written straight into recommend's read model (as identity's events would
leave them) and drafts are prepared before the window opens, each with its attachment's upload started (file chosen:
name, size, sha256 declared). In the window each business submits (receipt on arrival) and then sends the
attachment's bytes (one chunk, complete): 3 requests per business, the transfer finishing after the receipt, possibly
after the deadline. Clients retry a failed request (every step is idempotent).

Measured 2026-11-30 on this 2-core machine shared with other sessions (load 10-18), NOT MET at 2,000:
- 200 businesses in a 20 s window (upload then submit, 64 connections): all 200 accepted, none lost (200 receipts,
  events, Notify commands); submit p50 18 / p99 111 ms, whole flow p50 61 / p99 338 ms.
- 2,000 in 60 s, upload then submit, 64 connections: 1,732 refused (~45 requests/s is all the service did; the
  submits queued behind the uploads and arrived late).
- 2,000 in 60 s, submit first with the upload pending, one connection per business: 641 refused; with the 30 s
  grace (intake.DEADLINE_GRACE_SECONDS): 17 refused in one run, 512 in another at load 18 — requests sent in time
  were stamped 30+ s later: the queue is before the service's stamp (the saturated event loop of one uvicorn
  worker, and this client in the same machine). What it needs: the arrival stamped by the gateway (HAProxy
  `date()` in a header the gateway sets and strips from clients) and/or more replicas.
- Done since (`--gateway`): the gateway stamps X-Arrived-At (a client's copy deleted) and recommend judges by it.
  Back-to-back runs 2026-11-30 (load 8-10), 2,000 in 60 s, one connection per business: straight to the service
  (its own stamp) 656 refused; through the gateway (its stamp) 701 refused — no better, because here the queue is
  in FRONT of the gateway: the gateway received 678 of the submits more than 30 s after the deadline (its access
  log), up to 2.5 min after; sent -> gateway stamp p50 13.6 s, max 75.7 s. The bench client (2,000 connections in
  one Python event loop) shares the 2 cores with HAProxy, the service and other sessions, so what it "sent" in time
  reached the wire late; no server-side stamp can see that. The gateway's stamp removes the service's own queue
  (tests/integration/test_intake_gateway.py: a submission held 32 s behind the deadline is accepted), not the
  client's. Smaller surge where this client keeps up, 800 in 20 s, back-to-back: straight to the service 213
  refused (all 213 sent before the deadline; sent -> service stamp p50 6.6 s, max 47.2 s); through the gateway
  6 refused, all 6 sent before the deadline by the bench but received by the gateway 37+ s after it (sent ->
  gateway stamp p50 4.2 s, max 40.5 s: this client's own lag); 794 receipts, none lost.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pymongo import InsertOne, MongoClient  # noqa: E402

PROGRAMME = "bench-surge"
FORM = {"deadline": "2099-01-01T00:00:00+00:00",
        "fields": [{"name": "business_name", "label": {"ja": "事業者名", "en": "Business name"}, "type": "text",
                    "required": True, "prefill": "name"},
                   {"name": "latest_sales", "label": {"ja": "直近期の売上高", "en": "Latest sales"}, "type": "integer",
                    "required": True, "prefill": "financials[-1].sales"},
                   {"name": "plan", "label": {"ja": "事業計画", "en": "Plan"}, "type": "textarea", "required": True}],
        "documents": [{"doc_id": "business_plan", "label": {"ja": "事業計画書", "en": "Business plan"}, "required": True}]}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:.0f} ms, p95 {pct(values, 95) * 1000:.0f} ms, p99 {pct(values, 99) * 1000:.0f} ms"


async def call(http: httpx.AsyncClient, stats: dict, method: str, url: str, ok: tuple[int, ...] = (200, 201), **kw):
    """One request, retried on a connection error or a 5xx/429 (each intake step is idempotent)."""
    for attempt in range(20):
        try:
            r = await http.request(method, url, **kw)
            if r.status_code in ok:
                return r
            if r.status_code < 500 and r.status_code != 429:
                raise AssertionError(f"{method} {url}: {r.status_code} {r.text[:300]}")
        except httpx.TransportError:
            pass
        stats["retries"] += 1
        await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))
    raise AssertionError(f"{method} {url}: gave up")


async def run(base: str, heads: dict[str, dict], mongo: str, db: str, window: float, conc: int) -> dict:
    stats = {"retries": 0}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        # before the window: every business opens its draft (pre-filled), types its plan and attaches its file (the
        # upload is started: name, size and sha256 declared; the bytes go in the window)
        sem = asyncio.Semaphore(64)
        apps: dict[str, str] = {}
        files: dict[str, tuple[bytes, str, str]] = {}

        async def prepare(b: str):
            async with sem:
                r = await call(http, stats, "POST", f"/programmes/{PROGRAMME}/applications", headers=heads[b], json={})
                app = r.json()
                await call(http, stats, "PATCH", f"/applications/{app['application_id']}", headers=heads[b],
                           json={"version": app["version"], "values": {"plan": f"{b} の事業計画"}})
                apps[b] = app["application_id"]
                data = f"{b} 事業計画書 ".encode() * 64  # a small attachment (~2 KB)
                digest = hashlib.sha256(data).hexdigest()
                r = await call(http, stats, "POST", f"/applications/{apps[b]}/uploads", headers=heads[b], json={
                    "document": "business_plan", "name": "plan.pdf", "size": len(data), "sha256": digest,
                    "content_type": "application/pdf", "chunk_size": 1024 * 1024})
                files[b] = (data, digest, r.json()["upload_id"])
        t = time.monotonic()
        await asyncio.gather(*(prepare(b) for b in heads))
        print(f"prepared {len(apps)} drafts in {time.monotonic() - t:.1f}s")

        # the window: the deadline is `window` seconds away; the businesses arrive spread over it
        deadline = datetime.now(UTC) + timedelta(seconds=window)
        MongoClient(mongo)[db].programmes.update_one({"_id": PROGRAMME}, {"$set": {"form.deadline": deadline.isoformat()}})
        start = time.monotonic()
        spread = window * 0.9
        lat: dict[str, list[float]] = {"submit": [], "upload": [], "whole": []}
        receipts: dict[str, dict] = {}

        refused: list[tuple[datetime | None, str]] = []  # (when the bench sent the submission, why it failed)
        sent_at: dict[str, datetime] = {}

        async def surge(i: int, b: str):
            await asyncio.sleep(start + spread * i / len(heads) - time.monotonic())
            try:
                await flow(b)
            except AssertionError as e:
                refused.append((sent_at.get(b), str(e)))

        async def flow(b: str):
            # submit first (the receipt comes on arrival, R-POR-05), then the attachment's bytes: one chunk, complete
            t0 = time.monotonic()
            data, digest, up = files[b]
            sent = sent_at[b] = datetime.now(UTC)
            r = await call(http, stats, "POST", f"/applications/{apps[b]}/submit", headers=heads[b])
            receipts[b] = {**r.json(), "sent_at": sent, "done_at": datetime.now(UTC)}
            t1 = time.monotonic()
            await call(http, stats, "PUT", f"/uploads/{up}/chunks/0", content=data,
                       headers={**heads[b], "x-chunk-sha256": digest, "content-type": "application/octet-stream"})
            await call(http, stats, "POST", f"/uploads/{up}/complete", headers=heads[b])
            t2 = time.monotonic()
            lat["submit"].append(t1 - t0)
            lat["upload"].append(t2 - t1)
            lat["whole"].append(t2 - t0)
        await asyncio.gather(*(surge(i, b) for i, b in enumerate(heads)))
        elapsed = time.monotonic() - start
    if refused:
        print(f"{len(refused)} refused, e.g. {refused[0][1]}")
    return {"stats": stats, "lat": lat, "receipts": receipts, "deadline": deadline, "elapsed": elapsed, "apps": apps,
            "refused": refused}


async def count_topic(kafka: str, topic: str, want: str, ids: set[str], timeout: float) -> int:
    from aiokafka import AIOKafkaConsumer
    c = AIOKafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False,
                         group_id=None)
    await c.start()
    seen: set[str] = set()
    try:
        end = time.monotonic() + timeout
        while len(seen) < len(ids) and time.monotonic() < end:
            for recs in (await c.getmany(timeout_ms=500)).values():
                for rec in recs:
                    env = json.loads(rec.value)
                    if env["event_type"] == want:
                        aid = env["payload"].get("application_id") or env["payload"].get("params", {}).get("application_id")
                        if aid in ids:
                            seen.add(aid)
    finally:
        await c.stop()
    return len(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--window", type=float, default=60.0, help="seconds between the window opening and the deadline")
    ap.add_argument("--concurrency", type=int, default=0,
                    help="client connections (default: one per business, as real users have)")
    ap.add_argument("--gateway", action="store_true",
                    help="through the real gateway (deploy/local/gateway.sh), which stamps each request's arrival "
                         "(X-Arrived-At); without it, straight to the service, which stamps the arrival itself")
    a = ap.parse_args()
    from tests.support import (GATEWAY_PORT, LOCAL, Infra, Namespace, ServiceProcess, gateway_env, service_port,
                               token)

    infra = Infra(os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
                  os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017"), "bench")
    ns = Namespace()
    db = ns.db("recommend")
    import socket
    with socket.socket() as sock:  # a recommend still running there would answer instead of ours
        if sock.connect_ex(("127.0.0.1", service_port("recommend"))) == 0:
            sys.exit(f"port {service_port('recommend')} is in use: stop what runs there first")
    tmp = Path(tempfile.mkdtemp(prefix="intake-surge-"))
    proc = ServiceProcess("recommend", infra, ns, tmp, port=service_port("recommend"), OTEL_SPANS_FILE="",
                          OUTBOX_POLL_SECONDS="0.5", LOG_LEVEL="WARNING", INTAKE_BLOB_DIR=str(tmp / "blobs"))
    proc.start(timeout=300)
    base = proc.url
    if a.gateway:
        import subprocess
        subprocess.run([LOCAL / "gateway.sh", "start"], env=gateway_env(infra, ns), check=True)
        base = f"http://127.0.0.1:{GATEWAY_PORT}/api/recommend"
    mongo = MongoClient(infra.mongo)
    try:
        businesses = [f"surge-{i:05d}" for i in range(a.n)]
        mongo[db].business_profiles.bulk_write([InsertOne({
            "_id": b, "name": f"サージ株式会社{i}", "prefecture": "熊本県", "industry": "製造業", "employees": 10,
            "profile_version": 1, "financials": [{"fiscal_year": 2024, "sales": 100_000_000 + i}]})
            for i, b in enumerate(businesses)])
        mongo[db].programmes.insert_one({"_id": PROGRAMME, "name": "締切集中ベンチマーク補助金", "fiscal_year": 2026,
                                         "tags": {}, "form": FORM})
        heads = {b: {"authorization": f"Bearer {token(sub=f'acc-{b}', roles=['business'], biz=[{'id': b, 'role': 'prime'}])}"}
                 for b in businesses}
        a.concurrency = a.concurrency or a.n
        out = asyncio.run(run(base, heads, infra.mongo, db, a.window, a.concurrency))
        deadline, receipts = out["deadline"], out["receipts"]
        arrivals = [datetime.fromisoformat(r["accepted_at"]) for r in receipts.values()]
        late_done = sum(1 for r in receipts.values() if r["done_at"] > deadline)
        sent_by = max(r["sent_at"] for r in receipts.values())
        lag = [(datetime.fromisoformat(r["accepted_at"]) - r["sent_at"]).total_seconds() for r in receipts.values()]
        stamped_late = sum(1 for t in arrivals if t > deadline)
        submitted = mongo[db].applications.count_documents({"programme_id": PROGRAMME, "status": "submitted"})
        attached = mongo[db].applications.count_documents({"programme_id": PROGRAMME,
                                                           "attachments.business_plan": {"$exists": True}})
        ids = set(out["apps"].values())
        events = asyncio.run(count_topic(infra.kafka, ns.topic("recommend.events"), "recommend.ApplicationSubmitted",
                                         ids, 120))
        notices = asyncio.run(count_topic(infra.kafka, ns.topic("notifications.commands"), "notifications.Notify",
                                          ids, 120))
        lat = out["lat"]
        print(f"surge: {a.n} businesses, window {a.window:.0f}s before the deadline, {a.concurrency} connections, "
              f"{'through the gateway (its arrival stamp)' if a.gateway else 'straight to the service (its own stamp)'}")
        in_time = [t for t, _ in out["refused"] if t is not None and t <= deadline]
        late_sent = sum(1 for r in receipts.values() if r["sent_at"] > deadline) + len(out["refused"]) - len(in_time)
        print(f"  refused: {len(out['refused'])}, of which sent before the deadline (in time): {len(in_time)}; "
              f"sent after it by this client (its own event loop behind, not the service): {late_sent}")
        print(f"  finished in {out['elapsed']:.1f}s; {3 * a.n / out['elapsed']:.0f} requests/s; "
              f"{out['stats']['retries']} retries")
        print(f"  submit: {ms(lat['submit'])}")
        print(f"  attachment bytes (chunk, complete) after the receipt: {ms(lat['upload'])}; whole: {ms(lat['whole'])}")
        print(f"  last submit sent {(deadline - sent_by).total_seconds():.1f}s before the deadline; sent -> stamped "
              f"(queueing before the service reads it): p50 {pct(lag, 50):.2f}s, max {max(lag):.2f}s; "
              f"{stamped_late} stamped after the deadline, within the grace")
        print(f"  {late_done} submissions finished processing after the deadline (accepted: they arrived in time)")
        print(f"  receipts {len(receipts)}, submitted in the database {submitted}, attachments complete {attached}, "
              f"ApplicationSubmitted events {events}, Notify commands {notices}")
        assert len(receipts) == a.n and all(r["receipt_number"] and r["status"] == "submitted" for r in receipts.values())
        assert sent_by <= deadline, "the bench sent a submission after the deadline"
        assert submitted == a.n and attached == a.n and events == a.n and notices == a.n, "something was lost"
        print("  OK: every submission accepted with its receipt, none lost")
    finally:
        if a.gateway:
            subprocess.run([LOCAL / "gateway.sh", "stop"], env=gateway_env(infra, ns), check=False)
        proc.stop()
        mongo.drop_database(db)


if __name__ == "__main__":
    main()
