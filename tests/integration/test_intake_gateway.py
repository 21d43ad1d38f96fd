"""R-POR-05 deadline surge, through the real gateway (HAProxy, deploy/local/gateway.sh): the gateway stamps every
request's arrival (`X-Arrived-At`, epoch ms) after deleting any client-sent copy, and recommend judges the deadline by
that stamp. So a client cannot claim an earlier arrival, and a submission sent in time but queued in front of the
service until after the deadline (here: the service paused with SIGSTOP for longer than the 30 s grace) is accepted,
its receipt showing the gateway's time."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from pymongo import MongoClient

from recommend_service import intake
from tests.integration.test_recommend_service import prime
from tests.support import service_port

FORM = {"fields": [{"name": "plan", "label": {"ja": "事業計画", "en": "Plan"}, "type": "textarea", "required": True}],
        "documents": []}


def ms(t: datetime) -> str:
    return str(int(t.timestamp() * 1000))


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
    for who, pid in (("liar", closed), ("direct", closed), ("queued", surge)):
        bid = f"biz-{who}-{tag}"
        db.business_profiles.insert_one({"_id": bid, "name": f"{who} 株式会社", "prefecture": "熊本県",
                                         "industry": "製造業", "employees": 5, "profile_version": 1, "financials": []})
        heads[who] = prime(f"acc-{who}-{tag}", bid)
    async with httpx.AsyncClient(base_url=f"{gateway}/api/recommend", timeout=120) as http:
        for who, pid in (("liar", closed), ("direct", closed), ("queued", surge)):
            r = await http.post(f"/programmes/{pid}/applications", headers=heads[who], json={})
            assert r.status_code == 201, r.text
            r = await http.patch(f"/applications/{r.json()['application_id']}", headers=heads[who],
                                 json={"version": r.json()["version"], "values": {"plan": "新工場"}})
            assert r.status_code == 200, r.text
            apps[who] = r.json()["application_id"]

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
