"""The recommend service on real Kafka + MongoDB: recommendations with reasons (R-REC-01, R-REC-02),
the seeded catalogue (R-REC-04), pushed programmes sent once (R-NOT-01), aggregated uptake (R-REC-05)."""
from __future__ import annotations

import json
import uuid

import httpx
from aiokafka import AIOKafkaProducer

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered, FinancialPeriod
from tests.support import eventually, read_topic, token


def prime(account: str, business_id: str) -> dict:
    """A token of the business's prime account: recommend serves a business only to those it binds (R-ID-07)."""
    return auth(account, "business", biz=[{"id": business_id, "role": "prime"}])


def auth(sub: str, *roles: str, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), **claims)}"}


async def send(infra, ns, *envelopes: Envelope) -> None:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await p.start()
    try:
        for env in envelopes:
            await p.send_and_wait(ns.topic("identity.events"), env.model_dump_json().encode(), key=env.key.encode())
    finally:
        await p.stop()


async def notifies(infra, ns, n: int) -> list[dict]:
    recs = await read_topic(infra.kafka, ns.topic("notifications.commands"), min_count=n, timeout=30)
    return [json.loads(r.value)["payload"] for r in recs]


async def test_R_REC_01_R_REC_03_R_NOT_01_registered_business_gets_reasons_one_push_per_programme_and_diagnosis(infra, ns, services):
    svc = services("recommend")
    biz, owner = f"biz-{uuid.uuid4().hex[:8]}", f"acc-{uuid.uuid4().hex[:8]}"
    reg = Envelope.wrap(BusinessRegistered(business_id=biz, name="大阪精工", prefecture="大阪府", industry="製造業",
                                           employees=12), producer="identity", actor=owner)
    await send(infra, ns, reg)
    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def recs():
            r = await http.get(f"/businesses/{biz}/recommendations", params={"keywords": "事業承継,輸出"},
                               headers=prime(owner, biz))
            return r.json() if r.status_code == 200 else None
        got = await eventually(recs, timeout=30)
        ids = [g["programme"]["programme_id"] for g in got]
        # R-REC-04: the seeded catalogue; R-REC-01: a manufacturing programme ranks first, with its reasons.
        assert got[0]["programme"]["tags"]["industries"] and "製造業" in got[0]["programme"]["tags"]["industries"]
        assert any("業種が一致: 製造業" in r for r in got[0]["reasons"])
        assert "fy2009-chushin-shigaichi" not in ids[:3]  # a shopping-street programme is not a maker's best match
        assert any("ご回答に一致: 事業承継" in r for g in got for r in g["reasons"])
        assert got == sorted(got, key=lambda g: -g["score"])

        # Another business's account may not read them; an operator may.
        r = await http.get(f"/businesses/{biz}/recommendations", headers=auth("acc-other", "business"))
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        r = await http.get(f"/businesses/{biz}/recommendations", headers=auth("op-1", "operator"))
        assert r.status_code == 200
        r = await http.get(f"/businesses/{biz}/recommendations", params={"limit": 0}, headers=prime(owner, biz))
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        r = await http.post(f"/businesses/{biz}/interactions", json={"programme_id": "no-such", "kind": "used"},
                            headers=prime(owner, biz))
        assert r.status_code == 404 and "no-such" in r.json()["detail"]

    # R-NOT-01: the matching programmes were pushed to the owning account, through notifications.commands.
    first = await notifies(infra, ns, 1)
    assert {n["recipient_id"] for n in first} == {owner}
    assert all(n["template"] == "programme_recommended" and n["params"]["title"] for n in first)
    # The same event delivered again, then a profile change (same key, so handled after it) to a retailer.
    changed = Envelope.wrap(BusinessProfileChanged(business_id=biz, profile_version=2, changed=["industry", "employees"],
                                                   name="大阪精工", prefecture="大阪府", industry="小売業", employees=3,
                                                   financials=[FinancialPeriod(fiscal_year=2023, sales=100_000_000,
                                                                               operating_profit=5_000_000),
                                                               FinancialPeriod(fiscal_year=2024, sales=110_000_000,
                                                                               operating_profit=6_600_000)]),
                            producer="identity", actor=owner)
    await send(infra, ns, reg, changed)
    shop = f"rec:{biz}:fy2009-shotengai"

    async def after_change():
        got = await notifies(infra, ns, 1)
        return got if any(n["notification_id"] == shop for n in got) else None
    everything = await eventually(after_change, timeout=30)
    ids = [n["notification_id"] for n in everything]
    assert len(ids) == len(set(ids)), "a programme was pushed twice"
    assert f"rec:{biz}:fy2009-monozukuri-kiban" in ids  # from the registration (manufacturing)
    assert f"rec:{biz}:fy2009-chushin-shigaichi" in ids  # from the change (retail)
    assert f"rec:{biz}:fy2020-jigyo-shokei" not in ids  # a size-only match is not pushed

    # R-REC-03: the diagnosis uses the figures that came with the change; the simulation honours the cap.
    async with httpx.AsyncClient(base_url=svc.url) as http:
        r = await http.get(f"/businesses/{biz}/diagnosis", headers=prime(owner, biz),
                           params={"programme_id": "fy2020-monozukuri-renkei", "investment_yen": 90_000_000})
        assert r.status_code == 200, r.text
        body = r.json()
        assert round(body["indicators"]["sales_growth"], 4) == 0.1
        assert body["peer_medians"]["sales_growth"] is None  # no peers: nothing shown
        assert body["subsidy_simulation"] == {"investment": 90_000_000, "subsidy": 30_000_000, "own_burden": 60_000_000}
        r = await http.get(f"/businesses/{biz}/diagnosis", headers=prime(owner, biz),
                           params={"investment_yen": 1000})
        assert r.status_code == 422


async def test_R_NOT_01_R_REC_02_R_REC_05_new_programme_pushed_interactions_and_suppressed_uptake(infra, ns, services):
    svc = services("recommend")
    owners = {f"biz-{i}-{uuid.uuid4().hex[:6]}": f"acc-{uuid.uuid4().hex[:8]}" for i in range(6)}
    envs = [Envelope.wrap(BusinessRegistered(business_id=b, name=f"商店{i}", prefecture="鳥取県" if i == 5 else "東京都",
                                             industry="小売業", employees=4), producer="identity", actor=a)
            for i, (b, a) in enumerate(owners.items())]
    await send(infra, ns, *envs)
    bizs = list(owners)
    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def known():
            rs = [await http.get(f"/businesses/{b}", headers=auth("op", "operator")) for b in bizs]
            return all(r.status_code == 200 for r in rs)
        await eventually(known, timeout=30)

        # R-REC-02: five Tokyo shops use X and Y; the sixth uses only X and is pointed to Y by them.
        for b in bizs:
            for pid in ["fy2009-kaigai-tenkai"] + (["fy2020-ai-jinzai"] if b != bizs[5] else []):
                for _ in range(2):  # idempotent
                    r = await http.post(f"/businesses/{b}/interactions", json={"programme_id": pid, "kind": "used"},
                                        headers=prime(owners[b], b))
                    assert r.status_code == 200
        # the item-item counts are kept by the interactions' events (R-OPS-03): they arrive within moments
        async def counted():
            r = await http.get(f"/businesses/{bizs[5]}/recommendations", params={"limit": 50},
                               headers=prime(owners[bizs[5]], bizs[5]))
            return r if any("also used" in x for g in r.json() for x in g["reasons"]) else None
        r = await eventually(counted, timeout=30)
        ranked = [g["programme"]["programme_id"] for g in r.json()]
        ai = r.json()[ranked.index("fy2020-ai-jinzai")]
        assert any("also used" in x for x in ai["reasons"])
        # alike on content (both a size-only match), the programme its peers used ranks higher
        assert ranked.index("fy2020-ai-jinzai") < ranked.index("fy2020-keieisha-hosho")

        # R-REC-05: aggregated only, small cells suppressed, administrators only.
        r = await http.get("/analytics/programme-uptake", headers=auth(owners[bizs[0]], "business"))
        assert r.status_code == 403
        r = await http.get("/analytics/programme-uptake", params={"k": 2}, headers=auth("ag", "agency"))
        assert r.status_code == 422
        async def uptake():
            r = await http.get("/analytics/programme-uptake", headers=auth("ag", "agency"))
            return r if r.json()["suppressed_cells"] == 1 and len(r.json()["cells"]) == 2 else None
        r = await eventually(uptake, timeout=30)
        body = r.json()
        assert {(c["programme_id"], c["prefecture"], c["businesses"]) for c in body["cells"]} == {
            ("fy2009-kaigai-tenkai", "東京都", 5), ("fy2020-ai-jinzai", "東京都", 5)}
        assert body["suppressed_cells"] == 1  # the lone Tottori shop
        assert not any(b in r.text for b in bizs)

        # R-NOT-01: an operator adds a programme for Tokyo retailers; exactly those are notified.
        prog = {"programme_id": "tokyo-retail-2026", "name": "東京都小売業デジタル化支援", "fiscal_year": 2026,
                "subsidy_rate": "1/2", "cap_yen": 1000000,
                "tags": {"industries": ["小売業"], "prefectures": ["東京都"], "sizes": ["small"], "keywords": []}}
        r = await http.post("/programmes", json=prog, headers=auth(owners[bizs[0]], "business"))
        assert r.status_code == 403
        r = await http.post("/programmes", json={**prog, "fiscal_year": "soon"}, headers=auth("op", "operator"))
        assert r.status_code == 422
        r = await http.post("/programmes", json=prog, headers=auth("op", "operator"))
        assert r.status_code == 201
        r = await http.post("/programmes", json=prog, headers=auth("op", "operator"))
        assert r.status_code == 409

    async def pushed():
        got = await notifies(infra, ns, 1)
        mine = {n["recipient_id"] for n in got if n["params"].get("programme_id") == "tokyo-retail-2026"}
        return mine if len(mine) >= 5 else None
    assert await eventually(pushed, timeout=30) == {owners[b] for b in bizs[:5]}
