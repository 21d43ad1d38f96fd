"""R-POR-05 deadline surge, through the real gateway (HAProxy, deploy/local/gateway.sh): the gateway stamps every
request's arrival (`X-Arrived-At`, epoch ms) after deleting any client-sent copy, and recommend judges the deadline by
that stamp. So a client cannot claim an earlier arrival, and a submission sent in time but queued in front of the
service until after the deadline (here: the service paused with SIGSTOP for longer than the 30 s grace) is accepted,
its receipt showing the gateway's time."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pymongo import MongoClient

from recommend_service import intake
from tests.integration.test_recommend_service import auth, prime
from tests.support import gateway_env, service_port

FORM = {"fields": [{"name": "plan", "label": {"ja": "事業計画", "en": "Plan"}, "type": "textarea", "required": True}],
        "documents": []}


def ms(t: datetime) -> str:
    return str(int(t.timestamp() * 1000))


async def drafted(http, db, who: str, tag: str, pid: str) -> tuple[dict, str]:
    """A business of its own (profile in recommend's read model) with a filled-in draft for `pid`: its headers and
    the application id."""
    bid = f"biz-{who}-{tag}"
    db.business_profiles.insert_one({"_id": bid, "name": f"{who} 株式会社", "prefecture": "熊本県",
                                     "industry": "製造業", "employees": 5, "profile_version": 1, "financials": []})
    head = prime(f"acc-{who}-{tag}", bid)
    r = await http.post(f"/programmes/{pid}/applications", headers=head, json={})
    assert r.status_code == 201, r.text
    r = await http.patch(f"/applications/{r.json()['application_id']}", headers=head,
                         json={"version": r.json()["version"], "values": {"plan": "新工場"}})
    assert r.status_code == 200, r.text
    return head, r.json()["application_id"]


async def test_R_POR_05_the_gateways_arrival_stamp_counts_a_client_sent_one_is_ignored_and_a_queued_submission_in_time_is_accepted(
        infra, ns, services, gateway):
    svc = services("recommend", port=service_port("recommend"))
    db = MongoClient(infra.mongo)[ns.db("recommend")]
    tag = uuid.uuid4().hex[:8]
    closed, surge = f"gw-closed-{tag}", f"gw-surge-{tag}"
    far = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for pid in (closed, surge):
        db.programmes.insert_one({"_id": pid, "name": "締切テスト補助金", "fiscal_year": 2026, "tags": {},
                                  "form": {**FORM, "deadline": far}})
    heads, apps = {}, {}
    async with httpx.AsyncClient(base_url=f"{gateway}/api/recommend", timeout=120) as http:
        for who, pid in (("liar", closed), ("direct", closed), ("queued", surge)):
            heads[who], apps[who] = await drafted(http, db, who, tag, pid)

        # the closed programme's deadline passed 2 minutes ago (beyond the 30 s grace); a client claims through the
        # gateway to have arrived before it: the gateway deletes its header and stamps its own time -> refused
        deadline = datetime.now(UTC) - timedelta(seconds=120)
        db.programmes.update_one({"_id": closed}, {"$set": {"form.deadline": deadline.isoformat()}})
        claim = {intake.ARRIVAL_HEADER: ms(deadline - timedelta(seconds=30))}
        r = await http.post(f"/applications/{apps['liar']}/submit", headers={**heads["liar"], **claim})
        assert r.status_code == 409 and r.json()["code"] == "deadline_passed", r.text
        # the same header sent straight to the service (which only the gateway reaches in a deployment) would have
        # decided it: what the gateway strips is what counts
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as direct:
            r = await direct.post(f"/applications/{apps['direct']}/submit", headers={**heads["direct"], **claim})
            assert r.status_code == 200, r.text
            assert datetime.fromisoformat(r.json()["accepted_at"]) < deadline

        # the surge: the deadline is 3 s away; the service is held (SIGSTOP) from before the submission is sent until
        # 32 s after the deadline (beyond the grace): the request waits in front of it, at the gateway
        deadline = datetime.now(UTC) + timedelta(seconds=3)
        db.programmes.update_one({"_id": surge}, {"$set": {"form.deadline": deadline.isoformat()}})
        os.kill(svc.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(1)
            sent = datetime.now(UTC)
            # a new client connection: HAProxy sends a session's first request over a new server connection, which
            # the kernel queues for the held service (an idle kept-alive one could be closed by uvicorn on resuming,
            # and HAProxy then closes the client's connection so that it retries: a retry is stamped anew)
            late = httpx.AsyncClient(base_url=f"{gateway}/api/recommend", timeout=120)
            submit = asyncio.create_task(late.post(f"/applications/{apps['queued']}/submit", headers=heads["queued"]))
            await asyncio.sleep((deadline - datetime.now(UTC)).total_seconds() + intake.DEADLINE_GRACE_SECONDS + 2)
            assert not submit.done()  # still queued: nobody answered it before the deadline
        finally:
            os.kill(svc.proc.pid, signal.SIGCONT)
        t0 = time.monotonic()
        try:
            r = await submit
        finally:
            await late.aclose()
        assert r.status_code == 200, r.text
        answered = datetime.now(UTC)
        assert (answered - deadline).total_seconds() > intake.DEADLINE_GRACE_SECONDS  # processed well after it
        receipt = r.json()
        accepted_at = datetime.fromisoformat(receipt["accepted_at"])
        assert sent - timedelta(seconds=1) <= accepted_at <= deadline, (sent, accepted_at, deadline)
        assert receipt["receipt_number"] and receipt["status"] == "submitted"
        assert time.monotonic() - t0 < 60


async def test_R_POR_05_beyond_the_services_share_the_gateway_queues_a_surge_an_in_time_submission_is_accepted_a_late_one_refused(
        infra, ns, services, gateway):
    """The gateway passes at most `queue.maxconn` requests at a time to recommend (services/registry.toml) and holds
    the others in its own queue, after stamping their arrival. With the service's share taken by requests it does not
    answer (held with SIGSTOP), a submission sent before the deadline waits in the gateway's queue until well past the
    deadline and its grace, and is accepted with its arrival time; one that reached the gateway after the deadline and
    the grace is refused all the same: the queue changes when a request is processed, never when it arrived."""
    from servicekit import registry

    queue = registry.get("recommend").queue
    assert queue is not None and queue.maxconn <= 64
    svc = services("recommend", port=service_port("recommend"))
    db = MongoClient(infra.mongo)[ns.db("recommend")]
    tag = uuid.uuid4().hex[:8]
    pid = f"gw-queue-{tag}"
    db.programmes.insert_one({"_id": pid, "name": "締切テスト補助金", "fiscal_year": 2026, "tags": {},
                              "form": {**FORM, "deadline": (datetime.now(UTC) + timedelta(days=1)).isoformat()}})
    heads, apps = {}, {}
    async with httpx.AsyncClient(base_url=f"{gateway}/api/recommend", timeout=120) as http:
        for who in ("in_time", "late"):
            heads[who], apps[who] = await drafted(http, db, who, tag, pid)

    deadline = datetime.now(UTC) + timedelta(seconds=3)
    db.programmes.update_one({"_id": pid}, {"$set": {"form.deadline": deadline.isoformat()}})
    log = Path(gateway_env(infra, ns)["VAR_DIR"]) / "log" / "gateway.log"
    log_from = log.stat().st_size
    limits = httpx.Limits(max_connections=queue.maxconn + 8)
    clients = [httpx.AsyncClient(base_url=f"{gateway}/api/recommend", timeout=150, limits=limits) for _ in range(3)]
    fill, early, late = clients
    os.kill(svc.proc.pid, signal.SIGSTOP)
    try:
        # the service's whole share in flight, unanswered (a reviewer's list: no state changes)
        agency = auth(f"agency-{tag}", "agency")
        held = [asyncio.create_task(fill.get("/applications", headers=agency)) for _ in range(queue.maxconn)]
        await asyncio.sleep(1)
        sent = datetime.now(UTC)
        in_time = asyncio.create_task(early.post(f"/applications/{apps['in_time']}/submit", headers=heads["in_time"]))
        await asyncio.sleep((deadline - datetime.now(UTC)).total_seconds() + intake.DEADLINE_GRACE_SECONDS + 2)
        assert not in_time.done()  # waiting in the gateway's queue past the deadline and its grace
        late_sent = datetime.now(UTC)
        too_late = asyncio.create_task(late.post(f"/applications/{apps['late']}/submit", headers=heads["late"]))
        await asyncio.sleep(1)
    finally:
        os.kill(svc.proc.pid, signal.SIGCONT)
    try:
        answers = await asyncio.gather(*held)
        r, r_late = await in_time, await too_late
    finally:
        for c in clients:
            await c.aclose()
    assert all(a.status_code == 200 for a in answers)
    assert r.status_code == 200, r.text
    accepted_at = datetime.fromisoformat(r.json()["accepted_at"])
    assert sent - timedelta(seconds=1) <= accepted_at <= deadline, (sent, accepted_at, deadline)
    assert r.json()["receipt_number"] and r.json()["status"] == "submitted"
    assert (late_sent - deadline).total_seconds() > intake.DEADLINE_GRACE_SECONDS
    assert r_late.status_code == 409 and r_late.json()["code"] == "deadline_passed", r_late.text
    # both submissions waited in the gateway's own queue (HAProxy's %Tw), not in front of the service
    waited: dict[str, int] = {}
    for _ in range(50):  # HAProxy logs a request once it is answered
        with open(log, "rb") as f:
            f.seek(log_from)
            entries = [json.loads(line) for line in f if line.startswith(b"{")]
        waited = {e["uri"].split("/")[-2]: e["t_queue"] for e in entries if e.get("uri", "").endswith("/submit")}
        if len(waited) == 2:
            break
        await asyncio.sleep(0.1)
    assert waited[apps["in_time"]] > intake.DEADLINE_GRACE_SECONDS * 1000, waited
    assert waited[apps["late"]] > 0, waited
