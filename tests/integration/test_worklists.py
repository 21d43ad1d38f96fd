"""Worklists (R-OPS-01) on the running dispatch service over 10,000 dispatches learnt from dispatch.events:
each role pages through its own list with a cursor — no duplicates, no gaps, a stable order even while statuses
change during the paging — filters narrow it, and nobody lists another party's work."""
from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import datetime

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.experts import ExpertChanged
from tests.support import eventually, token

N = 10_000
STATUSES = ("requested", "approved", "visited", "reported", "confirmed")


def auth(sub: str, *roles: str, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), ttl=1800, **claims)}"}


def status_of(i: int) -> str:
    return STATUSES[i % len(STATUSES)]


async def produce(infra, ns, messages) -> None:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka, linger_ms=20, max_batch_size=256 * 1024)
    await p.start()
    try:
        futures = []
        for m in messages:
            env = Envelope.wrap(m, producer="dispatch")
            futures.append(await p.send(ns.topic(m.topic), env.model_dump_json().encode(), key=m.key().encode()))
        await asyncio.gather(*futures)
    finally:
        await p.stop()


async def test_R_OPS_01_worklists_page_10000_dispatches_without_duplicates_or_gaps(infra, ns, services):
    svc = services("dispatch")
    u = uuid.uuid4().hex[:6]
    biz, org, other_org, expert_id, expert_acc = f"biz-{u}", f"org-{u}", f"org-x-{u}", f"exp-{u}", f"acc-exp-{u}"
    ids = [f"dsp-{u}-{i:05d}" for i in range(N)]

    def event(i: int, status: str | None = None) -> DispatchStatusChanged:
        route_a = i % 2 == 0
        return DispatchStatusChanged(dispatch_id=ids[i], status=status or status_of(i), route="A" if route_a else "B",
                                     fiscal_year=2026, business_id=biz, expert_id=expert_id,
                                     institution_id=org if route_a else None)

    await produce(infra, ns, [ExpertChanged(expert_id=expert_id, account_id=expert_acc, change="approved",
                                            status="registered", name="山田")])
    started = time.monotonic()
    await produce(infra, ns, [event(i) for i in range(N)])
    produced = time.monotonic()
    worklist = AsyncMongoClient(infra.mongo)[ns.db("dispatch")].worklist

    async def all_learnt():
        return await worklist.count_documents({}) == N
    await eventually(all_learnt, timeout=400, interval=1)
    learnt = time.monotonic()
    print(f"\nR-OPS-01: {N} status events produced in {produced - started:.1f} s, read model complete after "
          f"{learnt - started:.1f} s ({N / (learnt - started):.0f} events/s)")

    business = auth(f"acc-{u}", "business", biz=[{"id": biz, "role": "prime"}])
    async with httpx.AsyncClient(base_url=svc.url, timeout=60) as http:
        async def walk(path: str, headers: dict, limit: int, **params) -> list[dict]:
            seen, cursor, pages = [], None, 0
            while True:
                r = await http.get(path, headers=headers,
                                   params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
                assert r.status_code == 200, r.text
                body = r.json()
                seen += body["items"]
                pages += 1
                if pages == 3:  # statuses change while the client pages: the order does not move
                    changed = random.Random(7).sample(range(N), 200)
                    asyncio.get_running_loop().create_task(produce(infra, ns, [event(i, "paid") for i in changed]))
                if not (cursor := body["next_cursor"]):
                    return seen

        # the business: all 10,000, each once, newest first, none missing
        t0 = time.monotonic()
        items = await walk("/worklists/business", business, 500)
        print(f"R-OPS-01: 10,000 items in 20 pages of 500 in {time.monotonic() - t0:.1f} s "
              f"({(time.monotonic() - t0) / 20 * 1000:.0f} ms a page)")
        got = [i["dispatch_id"] for i in items]
        assert len(got) == len(set(got)) == N and set(got) == set(ids)
        order = [(datetime.fromisoformat(i["requested_at"]), i["dispatch_id"]) for i in items]
        assert order == sorted(order, reverse=True)
        # filters: the institution's visited requests (route A only), in pages of 137
        inst = auth(f"staff-{u}", "institution", orgs=[{"org_id": org, "platform_id": "pf", "member_role":
                                                        "dispatch_member", "rights": []}])
        visited = await walk("/worklists/institution", inst, 137, status="visited")
        want = {ids[i] for i in range(N) if i % 2 == 0 and status_of(i) == "visited"}
        got_v = [i["dispatch_id"] for i in visited]
        assert len(got_v) == len(set(got_v)) and set(got_v) <= want and len(want - set(got_v)) <= 200  # some now paid
        assert all(i["institution_id"] == org and i["status"] == "visited" for i in visited)
        # the expert's requests to co-sign: route B, requested
        cosign = await walk("/worklists/expert", auth(expert_acc, "expert"), 500, queue="cosign")
        assert {i["dispatch_id"] for i in cosign} <= {ids[i] for i in range(N) if i % 2 and status_of(i) == "requested"}
        assert len(cosign) >= N // 10 - 200 and all(i["route"] == "B" for i in cosign)
        # the agency's queue of reports to confirm
        reports = await walk("/worklists/agency", auth("agency-1", "agency"), 500, queue="reports")
        assert {i["status"] for i in reports} == {"reported"} and len(reports) >= N // 5 - 200

        # nobody lists another party's work; a forged cursor is a 400, not a 500
        r = await http.get("/worklists/business", params={"business_id": biz},
                           headers=auth("someone", "business", biz=[{"id": "biz-other", "role": "prime"}]))
        assert r.status_code == 403
        r = await http.get("/worklists/institution", params={"org_id": org}, headers=auth("x", "institution", orgs=[
            {"org_id": other_org, "platform_id": "pf", "member_role": "dispatch_member", "rights": []}]))
        assert r.status_code == 403
        assert (await http.get("/worklists/agency", headers=business)).status_code == 403
        assert (await http.get("/worklists/business", headers=business, params={"cursor": "%%"})).status_code == 400
