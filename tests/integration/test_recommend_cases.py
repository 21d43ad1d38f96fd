"""Case studies (R-POR-08) on real Kafka + MongoDB: a business registered in identity (its event) gets the support
cases closest to its profile, with reasons, next to its programmes; the catalogue is searched a page at a time."""
from __future__ import annotations

import uuid

import httpx

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered
from tests.integration.test_recommend_service import auth, prime, send
from tests.support import eventually


async def test_R_POR_08_a_business_gets_cases_matched_to_its_profile_and_searches_the_catalogue(infra, ns, services):
    svc = services("recommend")
    biz, owner = f"biz-{uuid.uuid4().hex[:8]}", f"acc-{uuid.uuid4().hex[:8]}"
    await send(infra, ns, Envelope.wrap(BusinessRegistered(business_id=biz, name="とっとり青果", prefecture="鳥取県",
                                                           industry="小売業", employees=4), producer="identity", actor=owner))
    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def cases(**params):
            r = await http.get(f"/businesses/{biz}/case-recommendations", params=params, headers=prime(owner, biz))
            return r.json() if r.status_code == 200 else None

        got = await eventually(cases, timeout=30)
        assert got[0]["case"]["case_id"] == "case-02-shotengai-cafe"  # a small shop of the same region: closest
        assert got[0]["reasons"][:3] == ["同じ業種の事例: 小売業 (a case of your industry)",
                                         "同じ地域の事例: 鳥取県 (a case from your region)",
                                         "同じ規模の事例: 小規模事業者（従業員4人） (a business of your size)"]
        assert got[0]["case"]["summary_en"] and got == sorted(got, key=lambda g: -g["score"])
        assert "case-05-saisei-ryokan" not in [g["case"]["case_id"] for g in got]  # nothing in common
        # the questionnaire's answers count as they do for programmes
        answered = await cases(keywords="資金繰り,事業再生")
        assert "case-05-saisei-ryokan" in [g["case"]["case_id"] for g in answered]
        assert any("ご回答に一致: 資金繰り" in r for g in answered for r in g["reasons"])
        # alongside its programmes, from the same profile
        progs = (await http.get(f"/businesses/{biz}/recommendations", headers=prime(owner, biz))).json()
        assert progs and any("業種が一致: 小売業" in r for r in progs[0]["reasons"])

        # the profile changes in identity: the cases follow it
        await send(infra, ns, Envelope.wrap(BusinessProfileChanged(
            business_id=biz, profile_version=2, changed=["industry", "employees", "prefecture"], name="とっとり青果",
            prefecture="愛知県", industry="製造業", employees=15), producer="identity", actor=owner))

        async def moved():
            got = await cases()
            return got if got and got[0]["case"]["case_id"] == "case-01-shokei-seimitsu" else None
        assert await eventually(moved, timeout=30)

        # only the business itself (or its delegate, or an operator) sees its recommendations
        r = await http.get(f"/businesses/{biz}/case-recommendations", headers=auth("acc-other", "business"))
        assert r.status_code == 403
        assert (await http.get(f"/businesses/{biz}/case-recommendations", headers=auth("op-1", "operator"))).status_code == 200

        # the catalogue: searched by words, industry and region, a page at a time
        h = auth("acc-any", "institution")
        r = (await http.get("/cases", params={"q": "販路開拓", "region": "鳥取県"}, headers=h)).json()
        assert [c["case_id"] for c in r["items"]] == ["case-02-shotengai-cafe", "case-06-noshoko-jam"]
        assert r["next_after"] is None
        r = (await http.get("/cases", params={"industry": "製造業", "limit": 2}, headers=h)).json()
        assert [c["case_id"] for c in r["items"]] == ["case-01-shokei-seimitsu", "case-04-kaigai-shuzo"]
        r = (await http.get("/cases", params={"industry": "製造業", "limit": 2, "after": r["next_after"]}, headers=h)).json()
        assert [c["case_id"] for c in r["items"]] == ["case-06-noshoko-jam", "case-07-shoene-chuzo"]
        assert r["next_after"] is None
        assert (await http.get("/cases/case-04-kaigai-shuzo", headers=h)).json()["tags"]["prefectures"] == ["新潟県"]
        assert (await http.get("/cases/none", headers=h)).status_code == 404
        r = await http.get("/cases", params={"region": "Tottori"}, headers=h)
        assert r.status_code == 422 and "unknown region" in r.json()["detail"]
        assert (await http.get("/cases")).status_code == 401


async def test_R_POR_03_the_community_s_needs_and_offers_are_recommended_like_programmes(infra, ns, services):
    from contracts.events.community import PostingClosed, PostingPublished

    svc = services("recommend")
    biz, owner = f"biz-{uuid.uuid4().hex[:8]}", f"acc-{uuid.uuid4().hex[:8]}"
    await send(infra, ns, Envelope.wrap(BusinessRegistered(business_id=biz, name="熊本あおば製作所", prefecture="熊本県",
                                                           industry="製造業", employees=8), producer="identity", actor=owner))

    def posting(pid: str, region: str, industry: str, kind: str = "partner", owner_id: str = "biz-someone"):
        return Envelope.wrap(PostingPublished(posting_id=pid, direction="offer", kind=kind, region=region,
                                              industry=industry, owner_kind="business", owner_id=owner_id,
                                              title=f"{pid} の掲載"), producer="community", actor="acc-x")
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await producer.start()
    try:
        for env in (posting("pg-both", "熊本県", "製造業"), posting("pg-region", "熊本県", "小売業", "successor"),
                    posting("pg-far", "北海道", "小売業"), posting("pg-own", "熊本県", "製造業", owner_id=biz),
                    posting("pg-closed", "熊本県", "製造業"),
                    Envelope.wrap(PostingClosed(posting_id="pg-closed"), producer="community", actor="acc-x")):
            await producer.send_and_wait(ns.topic("community.events"), env.model_dump_json().encode(),
                                         key=env.key.encode())
    finally:
        await producer.stop()
    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def recommended(**params):
            r = await http.get(f"/businesses/{biz}/posting-recommendations", params=params, headers=prime(owner, biz))
            got = r.json() if r.status_code == 200 else []
            return got if [g["posting_id"] for g in got] == ["pg-both", "pg-region"] else None
        got = await eventually(recommended, timeout=40)
        assert got[0]["reasons"] == ["same prefecture (熊本県)", "same industry (製造業)"]
        assert got[0]["title"] == "pg-both の掲載" and got[0]["link"] == "/api/community/postings/pg-both"
        r = await http.get(f"/businesses/{biz}/posting-recommendations", headers=auth("acc-other", "business"))
        assert r.status_code == 403
