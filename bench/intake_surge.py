"""Deadline-surge benchmark of application intake (R-POR-05, issue 19): N businesses (2,000 by default) each upload a
small attachment and submit in the last minute before a programme's deadline, against a running recommend service.
Every one must be accepted with its receipt (accepted_at = arrival time, at or before the deadline), none lost: the
counts are asserted in the database and on Kafka (ApplicationSubmitted events and Notify commands), figures printed.

    uv run --frozen python bench/intake_surge.py --gateway     # 2,000 submissions in a 60 s window, via HAProxy
    uv run --frozen python bench/intake_surge.py --n 200 --window 20 --gateway
    (--workers N: recommend with N uvicorn workers; --procs N: client processes; without --gateway: straight to the
    service, which then stamps the arrival itself)

Starts the recommend service itself (as tests do) against KAFKA_BOOTSTRAP and MONGO_URI, in its own topic prefix and
database, and with --gateway the real gateway (deploy/local/gateway.sh: it stamps X-Arrived-At and queues requests
to recommend beyond `queue.maxconn` in flight, services/registry.toml). The businesses' profiles are written
straight into recommend's read model (as identity's events would leave them) and drafts are prepared before the
window opens (httpx, 64 at a time, not timed), each with its attachment's upload started (name, size, sha256
declared). In the window business i clicks "submit" at a fixed moment (spread over the first 90% of the window),
opens its own connection and, on it, submits (receipt on arrival), sends the attachment's bytes (one chunk) and
completes the upload: 3 requests, the transfer finishing after the receipt, possibly after the deadline. A failed
request is retried (every step is idempotent). The window's client is light so that it is not the bottleneck: 4
processes (`--procs`), raw HTTP/1.1 on asyncio streams, the request bytes built before the window; "sent" is the wall
clock read right before the submission's bytes are written, and the receipt's accepted_at is the gateway's stamp, so
"sent -> stamp" is the time from the client's write to HAProxy having the request's headers. In time = sent at or
before the deadline; the bench asserts none of those is refused, every business has its receipt, and the database
and Kafka hold all 2,000 (submitted, attachment complete, ApplicationSubmitted, Notify). It also prints the CPU
seconds each part used in the window (/proc) and the gateway's own queue and answer times (its access log; HAProxy
drops a few log lines under load, so a count may read 1,994-1,999).

MET, 2026-11-30, this 2-core machine shared with other sessions (load 4-14 during the runs):
- 2,000 in 60 s through the gateway, the final setup (gateway queue maxconn 32, one uvicorn worker), three runs:
  0 refused each time, 2,000 receipts, 2,000 submitted with the attachment, 2,000 ApplicationSubmitted, 2,000 Notify.
  Run 1 (load 4): sent -> gateway stamp p50 0.000 s, p99 0.005 s, max 0.038 s; submit answered p50 0.040 s,
  p99 0.61 s, max 0.95 s; attachment after the receipt p99 0.90 s, max 1.93 s; last answer 54.0 s after the first
  click (111 requests/s: the service kept up); HAProxy queue max 0.3 s.
  Run 2 (load 14, other sessions' benches and tests running): the service managed 43 requests/s, so the surge was
  queued: HAProxy held submissions up to 46.7 s (p50 23.5 s) while the service answered each in p50 1.0 / max 2.5 s;
  submit answered p50 24.9 s, max 47.8 s; 840 submissions answered after the deadline, every one accepted (stamped
  on arrival); last answer 139.8 s after the first click. Sent -> gateway stamp still max 0.058 s (the client's
  clicks fell up to 5.2 s behind its schedule, all before the deadline).
  Run 3 (load 10): 59 requests/s; HAProxy queue max 24.7 s; submit answered p50 12.7 s, max 25.3 s; 349 answered
  after the deadline, all accepted; sent -> stamp max 0.088 s; machine 211.7 of 213 CPU-s busy (all sessions) from
  the client's start to the last answer, of which recommend 35.8, FerretDB 43.8, Kafka 4.0, HAProxy 4.8, client 3.3.
- 200 in 20 s through the gateway (load 12): all 200 accepted, none lost; sent -> stamp max 0.050 s; submit p50
  0.031 s, p99 0.29 s; no queueing.
- Where the time goes (CPU seconds in the window, /proc; 6,000 requests): recommend 28.6-34.6 (~5 ms a request:
  token check, pydantic, ~4-6 database round trips each, the outbox relay), FerretDB 31.0-39.9 (~5-6 ms a request),
  Kafka 2.9-5.8, HAProxy 2.3-4.7, this client 2.6-2.9 (~0.45 ms a request). The machine's 2 cores were busy the
  whole window (other sessions included): the surge is CPU-bound, the service and its database taking the most.
- Same client, other setups (back to back): without the gateway's queue (every request passed to the service at
  once; SERVICE_REGISTRY without `queue`), 2 runs: 0 refused either time, but every open request sat in the service:
  submit answered p50 0.86 / p99 1.90 / max 2.63 s (load 7) and p50 1.78 / p99 12.9 / max 19.5 s (load rising 1 -> 7;
  attachment max 35 s, close to HAProxy's 60 s `timeout server`, after which a retry would be stamped anew); with
  the queue the wait is in HAProxy, which holds it up to 180 s (`timeout client` does not run while a request is
  queued: checked with a 2 s `timeout client` and 9 s in the queue, answered 200). Two uvicorn workers (`--workers 2`, queue on): 0 refused but slower, submit p50 3.0 / p99 5.3 s, HAProxy
  queue p50 2.7 s (one run, load 7.6; recommend 31.3, FerretDB 36.9 CPU-s): on 2 busy cores a second worker
  adds no capacity, so the bench keeps one.
- Before (the earlier client: 2,000 connections in one Python event loop with httpx, same machine): 701 of 2,000
  refused through the gateway — the client put requests "sent" in time on the wire up to 75.7 s late (sent ->
  gateway stamp p50 13.6 s), so the gateway stamped them after the deadline and its grace; straight to the service
  656 refused; 800 in 20 s: 6 refused through the gateway, 213 straight to the service. The gateway's stamp removes
  the queue in front of the service; a client that cannot keep up is outside what any server can see.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

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


# --- the window's client: light, several processes, raw HTTP/1.1 on asyncio streams -----------------------------------
# Each business is its own TCP connection (opened at its moment, kept alive for its three requests), as 2,000 businesses
# across the country are; the request bytes are built before the window, so a request costs the client a write and a
# parse of the status line and headers. "sent" is the wall clock read right before the submission's bytes are written.
class Plan(NamedTuple):
    business: str
    at: float  # wall-clock time (epoch s) the business clicks "submit"
    submit: bytes
    chunk: bytes
    complete: bytes


def _request(method: str, path: str, host: str, auth: str, body: bytes = b"", extra: dict | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Authorization: {auth}", f"Content-Length: {len(body)}",
            "Accept: application/json", *(f"{k}: {v}" for k, v in (extra or {}).items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> tuple[int, bytes, bool, float]:
    """Writes one request, reads its response: (status, body, server keeps the connection, wall time sent)."""
    sent = time.time()
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                break
        body = body[:-2]
    else:
        body = await reader.readexactly(int(hdrs.get("content-length", "0")))
    return status, body, hdrs.get("connection", "").lower() != "close", sent


async def _business(p: Plan, host: str, port: int, out: dict) -> None:
    await asyncio.sleep(max(0.0, p.at - time.time()))
    out.update(business=p.business, scheduled=p.at, click=time.time(), retries=0, connects=0)
    conn: list = []

    async def step(name: str, req: bytes) -> dict:
        for attempt in range(30):
            try:
                if not conn:
                    out["connects"] += 1
                    conn.extend(await asyncio.wait_for(asyncio.open_connection(host, port), 60))
                status, body, keep, sent = await asyncio.wait_for(_exchange(*conn, req), 300)
                out.setdefault(f"{name}_sent", sent)  # the first attempt's: what the business did, and when
                if not keep:
                    conn[1].close()
                    conn.clear()
                if status in (200, 201):
                    out[f"{name}_done"] = time.time()
                    return json.loads(body)
                if status < 500 and status != 429:
                    out["refused"] = f"{name}: {status} {body[:300].decode(errors='replace')}"
                    raise _Refused()
                out.setdefault("statuses", []).append(status)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError,
                    IndexError) as e:
                out.setdefault("errors", []).append(f"{name}: {type(e).__name__}")
                if conn:
                    conn[1].close()
                    conn.clear()
            out["retries"] += 1
            await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))
        out["refused"] = f"{name}: gave up"
        raise _Refused()

    try:
        out["receipt"] = await step("submit", p.submit)
        await step("chunk", p.chunk)
        await step("complete", p.complete)
    except _Refused:
        pass
    finally:
        if conn:
            conn[1].close()


class _Refused(Exception):
    pass


def _client_process(plans: list[Plan], host: str, port: int) -> list[dict]:
    async def go() -> list[dict]:
        outs = [{} for _ in plans]
        await asyncio.gather(*(_business(p, host, port, o) for p, o in zip(plans, outs)))
        return outs
    t = time.process_time()
    outs = asyncio.run(go())
    if outs:
        outs[0]["client_cpu"] = time.process_time() - t  # this process's CPU seconds in the window
    return outs


async def prepare(base: str, heads: dict[str, dict], conc: int) -> tuple[dict, dict, dict]:
    """Before the window: every business opens its draft (pre-filled), types its plan and attaches its file (the upload
    is started: name, size and sha256 declared; the bytes go in the window). Not timed."""
    stats = {"retries": 0}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    apps: dict[str, str] = {}
    files: dict[str, tuple[bytes, str, str]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        sem = asyncio.Semaphore(conc)

        async def one(b: str):
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
        await asyncio.gather(*(one(b) for b in heads))
        print(f"prepared {len(apps)} drafts in {time.monotonic() - t:.1f}s ({stats['retries']} retries)")
    return apps, files, stats


def window(base: str, heads: dict[str, dict], apps: dict, files: dict, deadline: datetime, window_s: float,
           procs: int) -> list[dict]:
    """The surge: business i clicks "submit" at deadline - window + 0.9 * window * i / n (wall clock), then sends its
    attachment's bytes (one chunk) and completes the upload, all on its own connection; `procs` client processes."""
    u = urlsplit(base)
    host, port, prefix = u.hostname, u.port, u.path.rstrip("/")
    hosthdr = f"{host}:{port}"
    start = deadline.timestamp() - window_s
    plans = []
    for i, b in enumerate(heads):
        data, digest, up = files[b]
        auth = heads[b]["authorization"]
        plans.append(Plan(b, start + 0.9 * window_s * i / len(heads),
                          _request("POST", f"{prefix}/applications/{apps[b]}/submit", hosthdr, auth),
                          _request("PUT", f"{prefix}/uploads/{up}/chunks/0", hosthdr, auth, data,
                                   {"X-Chunk-SHA256": digest, "Content-Type": "application/octet-stream"}),
                          _request("POST", f"{prefix}/uploads/{up}/complete", hosthdr, auth)))
    shares = [plans[k::procs] for k in range(procs)]  # interleaved: each process's businesses spread over the window
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_client_process, share, host, port) for share in shares]
        return [o for f in futures for o in f.result()]


def cpu_snapshot(service_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each part on this machine: the recommend service (its process tree), HAProxy,
    FerretDB and Kafka of this checkout, and the whole machine (all sessions; /proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        f = stat.rsplit(")", 1)[1].split()
        procs[int(d)] = (int(f[1]), cmd, (int(f[11]) + int(f[12])) / tick)
    out = {"recommend": 0.0, "gateway (HAProxy)": 0.0, "database (FerretDB)": 0.0, "Kafka": 0.0}
    tree = {service_pid}
    for pid in sorted(procs):  # children start after their parents (pids grow; good enough here)
        if procs[pid][0] in tree:
            tree.add(pid)
    for pid, (_, cmd, t) in procs.items():
        if pid in tree:
            out["recommend"] += t
        elif str(ROOT) in cmd or os.environ.get("VAR_DIR", "//") in cmd:
            part = ("gateway (HAProxy)" if cmd.startswith("haproxy") else "database (FerretDB)" if "ferretdb" in cmd
                    else "Kafka" if "kafka.Kafka" in cmd else None)
            if part:
                out[part] += t
    cpu = open("/proc/stat").readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, cpu[:7])  # guest time is already inside user
    out["machine (all sessions)"] = (user + nice + system + irq + softirq) / tick
    out["wall"] = time.time()
    return out


def _gateway_figures(log: Path, offset: int) -> dict[str, dict[str, list[float]]]:
    """The gateway's own timings of the window's requests from its access log (ms): t_queue (waiting in HAProxy for a
    free connection to the service), t_resp (the service's time to answer), t_total."""
    figs: dict[str, dict[str, list[float]]] = {}
    with open(log, "rb") as f:
        f.seek(offset)
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            uri = e.get("uri", "")
            kind = "submit" if uri.endswith("/submit") else "chunk" if "/chunks/" in uri else \
                "complete" if uri.endswith("/complete") else None
            if kind:
                d = figs.setdefault(kind, {"t_queue": [], "t_resp": [], "t_total": [], "status": []})
                for k in ("t_queue", "t_resp", "t_total", "status"):
                    d[k].append(e.get(k, -1))
    return figs


def report(a, outs: list[dict], deadline: datetime, db, infra, ns, ids: set[str], gw_log: Path | None,
           gw_from: int, cpu: dict[str, float]) -> None:
    dl = deadline.timestamp()
    receipts = [o for o in outs if "receipt" in o]
    refused = [o for o in outs if "refused" in o and "receipt" not in o]
    unfinished = [o for o in outs if "refused" in o and "receipt" in o]  # receipt given, attachment failed
    in_time_refused = [o for o in refused if o.get("submit_sent", o["click"]) <= dl]
    client_lag = [o["click"] - o["scheduled"] for o in outs]
    stamp = {o["business"]: datetime.fromisoformat(o["receipt"]["accepted_at"]).timestamp() for o in receipts}
    lag = [stamp[o["business"]] - o["submit_sent"] for o in receipts]
    click_lag = [stamp[o["business"]] - o["click"] for o in receipts]
    sent_late = sum(1 for o in outs if o.get("submit_sent", o["click"]) > dl)
    stamped_late = sum(1 for t in stamp.values() if t > dl)
    submit = [o["submit_done"] - o["submit_sent"] for o in receipts]
    upload = [o["complete_done"] - o["submit_done"] for o in receipts if "complete_done" in o]
    whole = [o["complete_done"] - o["click"] for o in receipts if "complete_done" in o]
    done_late = sum(1 for o in receipts if o["submit_done"] > dl)
    first, last = min(o["click"] for o in outs), max(o.get("complete_done", o["click"]) for o in outs)
    retries = sum(o["retries"] for o in outs)
    errors: dict[str, int] = {}
    for o in outs:
        for e in o.get("errors", []) + [str(s) for s in o.get("statuses", [])]:
            errors[e] = errors.get(e, 0) + 1
    submitted = db.applications.count_documents({"programme_id": PROGRAMME, "status": "submitted"})
    attached = db.applications.count_documents({"programme_id": PROGRAMME, "attachments.business_plan": {"$exists": True}})
    events = asyncio.run(count_topic(infra.kafka, ns.topic("recommend.events"), "recommend.ApplicationSubmitted", ids, 180))
    notices = asyncio.run(count_topic(infra.kafka, ns.topic("notifications.commands"), "notifications.Notify", ids, 180))
    s = lambda v: f"p50 {pct(v, 50):.3f}s, p99 {pct(v, 99):.3f}s, max {max(v, default=float('nan')):.3f}s"  # noqa: E731
    print(f"surge: {a.n} businesses, window {a.window:.0f}s before the deadline, one connection each, {a.procs} client "
          f"processes, recommend with {a.workers} uvicorn worker(s), {'through the gateway (its arrival stamp)' if a.gateway else 'straight to the service (its own stamp)'}")
    print(f"  refused: {len(refused)}, of which sent before the deadline (in time): {len(in_time_refused)}"
          + (f", e.g. {refused[0]['refused']}" if refused else ""))
    print(f"  receipt but attachment failed: {len(unfinished)}" + (f", e.g. {unfinished[0]['refused']}" if unfinished else ""))
    print(f"  client: click behind its schedule {s(client_lag)}; submissions sent after the deadline: {sent_late}")
    print(f"  sent -> arrival stamp: {s(lag)}; click (before connecting) -> stamp: {s(click_lag)}; "
          f"{stamped_late} stamped after the deadline (within the grace)")
    print(f"  submit answered {s(submit)}; attachment (chunk, complete) after the receipt {s(upload)}; whole {s(whole)}")
    print(f"  {done_late} submissions answered after the deadline (accepted: they arrived in time)")
    print(f"  window to last answer {last - first:.1f}s; {3 * len(outs) / (last - first):.0f} requests/s; {retries} retries"
          + (f" ({errors})" if errors else ""))
    wall = cpu.pop("wall")
    print(f"  CPU seconds from the client's start to the last answer ({wall:.0f}s, {os.cpu_count()} cores = "
          f"{os.cpu_count() * wall:.0f} CPU-s): " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
          + f"; load {os.getloadavg()[0]:.1f}")
    if gw_log is not None and gw_log.exists():
        for kind, d in _gateway_figures(gw_log, gw_from).items():
            st: dict = {}
            for x in d["status"]:
                st[x] = st.get(x, 0) + 1
            print(f"  gateway {kind}: {len(d['status'])} requests {st}; queue in HAProxy p50 {pct(d['t_queue'], 50):.0f} "
                  f"max {max(d['t_queue']):.0f} ms; service answer p50 {pct(d['t_resp'], 50):.0f} p99 "
                  f"{pct(d['t_resp'], 99):.0f} max {max(d['t_resp']):.0f} ms")
    print(f"  receipts {len(receipts)}, submitted in the database {submitted}, attachments complete {attached}, "
          f"ApplicationSubmitted events {events}, Notify commands {notices}")
    assert not in_time_refused, f"{len(in_time_refused)} submissions sent in time were refused"
    assert len(receipts) == a.n and all(o["receipt"]["receipt_number"] and o["receipt"]["status"] == "submitted"
                                        for o in receipts), "not every business got its receipt"
    assert sent_late == 0, "the bench sent a submission after the deadline"
    assert submitted == a.n and attached == a.n and events == a.n and notices == a.n, "something was lost"
    print("  OK: every submission accepted with its receipt, none lost")


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
    ap.add_argument("--procs", type=int, default=4, help="client processes in the window (each business has its own "
                                                          "connection, as real users have)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the recommend service (as "
                                                             "replicas: each its consumers and outbox relay)")
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
                          args=("--workers", str(a.workers)) if a.workers > 1 else (),
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
        apps, files, _ = asyncio.run(prepare(base, heads, 64))
        # the window: the deadline is `window` seconds after the first business clicks (a few seconds from now, for
        # the client processes to start)
        deadline = datetime.now(UTC) + timedelta(seconds=a.window + 5)
        mongo[db].programmes.update_one({"_id": PROGRAMME}, {"$set": {"form.deadline": deadline.isoformat()}})
        gw_log = Path(gateway_env(infra, ns)["VAR_DIR"]) / "log" / "gateway.log"
        gw_from = gw_log.stat().st_size if a.gateway and gw_log.exists() else 0
        cpu0 = cpu_snapshot(proc.proc.pid)
        outs = window(base, heads, apps, files, deadline, a.window, a.procs)
        cpu1 = cpu_snapshot(proc.proc.pid)
        cpu = {k: cpu1[k] - cpu0[k] for k in cpu0} | {"bench client": sum(o.get("client_cpu", 0) for o in outs)}
        report(a, outs, deadline, mongo[db], infra, ns, set(apps.values()),
               gw_log if a.gateway else None, gw_from, cpu)
    finally:
        if a.gateway:
            subprocess.run([LOCAL / "gateway.sh", "stop"], env=gateway_env(infra, ns), check=False)
        proc.stop()
        mongo.drop_database(db)


if __name__ == "__main__":
    main()
