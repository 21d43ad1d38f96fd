"""The portal's other functions as one story through the gateway (issue 18; R-POR-02, 03, 04, 06), every service a
process on real Kafka and MongoDB: a business asks in the community and an expert answers; the business is matched
with a partner (contact details only once both consent); both join a regional joint order and each hears its result
in its inbox; its institution logs the consultation, which another institution sees only while the business shares
its history."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from contracts.vocab import MemberRole, fiscal_year
from tests.integration.e2e_support import bearer, claim, ok
from tests.support import eventually, service_port

FY = fiscal_year(datetime.now(UTC) + timedelta(hours=9))


@pytest.fixture
def portal(services, gateway):
    for name in ("identity", "community", "dispatch", "notifications"):
        services(name, port=service_port(name))
    return gateway


async def test_R_POR_02_R_POR_03_R_POR_04_R_POR_06_one_story_through_the_gateway(portal):
    tag = uuid.uuid4().hex[:6]
    bureau = bearer("officer-kyushu", "bureau", bureau_id="bureau-kyushu")
    async with httpx.AsyncClient(base_url=portal, timeout=20) as http:
        # identity: two institutions and the platform of 熊本県 (its support area)
        chamber = (await ok(await http.post("/api/identity/organisations", headers=bureau, json={
            "name": "熊本商工会議所", "kind": "institution", "institution_type": 2})))["org_id"]
        shinkin = (await ok(await http.post("/api/identity/organisations", headers=bureau, json={
            "name": "肥後信用金庫", "kind": "institution", "institution_type": 8})))["org_id"]
        others = [(await ok(await http.post("/api/identity/organisations", headers=bureau, json={
            "name": name, "kind": "institution", "institution_type": t})))["org_id"]
            for name, t in (("熊本市商工会", 1), ("よろず支援拠点", None))]  # a platform has four members at least
        pid = (await ok(await http.post("/api/identity/platforms", headers=bureau, json={
            "name": "熊本県地域プラットフォーム", "bureau_id": "bureau-kyushu", "fiscal_year": FY,
            "representative_id": chamber, "member_ids": [chamber, shinkin, *others],
            "area": {"prefectures": ["熊本県"]}})))["platform_id"]
        chamber_staff = bearer("chamber-staff", "institution", orgs=[claim(chamber, pid, MemberRole.REPRESENTATIVE)])
        shinkin_staff = bearer("shinkin-staff", "institution", orgs=[claim(shinkin, pid, MemberRole.INSTITUTION)])

        # two sole proprietors of 熊本県 register (bound at once); their tokens carry the binding (R-ID-07)
        biz = {}
        for who, name in (("a", "熊本あおば製作所"), ("b", "くまもと販路商会")):
            account = f"acct-{who}-{tag}"
            registered = await ok(await http.post("/api/identity/businesses", headers=bearer(account, "business"),
                                                  json={"name": name, "postal_code": "860-0001",
                                                        "address": "熊本県熊本市中央区千葉城町1-1", "prefecture": "熊本県",
                                                        "representative": "熊本 一郎", "industry": "製造業",
                                                        "employees": 8, "capital": 3_000_000}))
            bid = registered["business_id"]
            biz[who] = (bid, bearer(account, "business", biz=[{"id": bid, "role": "prime"}]))
        (a_id, a), (b_id, b) = biz["a"], biz["b"]
        expert = bearer(f"acct-expert-{tag}", "expert")

        # R-POR-02: A asks, an expert answers, A marks the answer accepted
        thread = await ok(await http.post("/api/community/threads", headers=a, json={
            "category": "sales", "title": "県外の販路を広げるには", "body": "県外の取引先を探しています。"}))
        answer = await ok(await http.post(f"/api/community/threads/{thread['thread_id']}/posts", headers=expert,
                                          json={"body": "商談会と、共同受発注の案件をおすすめします。"}))
        await ok(await http.post(f"/api/community/threads/{thread['thread_id']}/posts/{answer['post_id']}/mark",
                                 headers=a, json={"mark": "accepted"}))

        # R-POR-03: A needs a sales partner; B is interested; contacts show only once both consent
        posting = await ok(await http.post("/api/community/postings", headers=a, json={
            "direction": "need", "kind": "partner", "title": "販路開拓のパートナー募集", "body": "県外への販路",
            "region": "熊本県", "industry": "製造業", "contact": {"name": "熊本 一郎", "email": f"a-{tag}@example.jp"}}))
        match = await ok(await http.post(f"/api/community/postings/{posting['posting_id']}/interests", headers=b,
                                         json={"message": "協業できます", "contact": {"name": "販路 花子",
                                                                                   "email": f"b-{tag}@example.jp"}}))
        mid = match["match_id"]
        assert match["owner_contact"] is None
        await ok(await http.post(f"/api/community/matches/{mid}/consent", headers=a))
        assert (await ok(await http.get(f"/api/community/matches/{mid}", headers=b)))["owner_contact"] is None
        connected = await ok(await http.post(f"/api/community/matches/{mid}/consent", headers=b))
        assert connected["status"] == "connected" and connected["owner_contact"]["email"] == f"a-{tag}@example.jp"

        # R-POR-04: the chamber posts a joint order for the platform's area (once community knows the area)
        order_in = {"platform_id": pid, "title": "県産品フェアの共同受注", "description": "2ロット",
                    "deadline": (date.today() + timedelta(days=20)).isoformat(),
                    "lots": [{"title": "製造"}, {"title": "販路・配送"}]}

        async def posted():
            r = await http.post("/api/community/joint-orders", headers=chamber_staff, json=order_in)
            return r.json() if r.status_code == 201 else None
        order = await eventually(posted, timeout=60)
        oid = order["order_id"]

        async def applied(who: dict, lot: str):
            r = await http.post(f"/api/community/joint-orders/{oid}/applications", headers=who, json={"lot_id": lot})
            return r.json() if r.status_code == 201 else None  # once community knows where the business is
        await eventually(lambda: applied(a, "lot-1"), timeout=60)
        await eventually(lambda: applied(b, "lot-2"), timeout=60)
        await ok(await http.post(f"/api/community/joint-orders/{oid}/award", headers=chamber_staff,
                                 json={"awards": {"lot-1": a_id, "lot-2": b_id}}))

        async def heard(who: dict):
            inbox = (await http.get("/api/notifications/inbox", headers=who)).json()
            return [m for m in inbox if oid in m.get("body", "") or oid in m.get("subject", "")] or None
        assert await eventually(lambda: heard(a), timeout=60)
        assert await eventually(lambda: heard(b), timeout=60)

        # R-POR-06: the chamber logs A's consultation; the shinkin sees it only while A shares its history
        await ok(await http.post("/api/dispatch/support-history/entries", headers=chamber_staff, json={
            "business_id": a_id, "consulted_on": date.today().isoformat(), "topic": "販路開拓",
            "summary": "共同受注の結果を踏まえ、県外展示会への出展を検討。"}))

        async def entries(who: dict) -> list:
            r = await http.get("/api/dispatch/support-history", headers=who, params={"business_id": a_id})
            return (await ok(r))["items"]
        assert [e for e in await entries(shinkin_staff) if e.get("topic") == "販路開拓"] == []

        async def granted():
            r = await http.post("/api/dispatch/support-history/grants", headers=a, json={"org_id": shinkin})
            return r.json() if r.status_code == 201 else None  # once dispatch knows the organisation
        await eventually(granted, timeout=60)
        assert [e["topic"] for e in await entries(shinkin_staff) if e.get("topic") == "販路開拓"] == ["販路開拓"]
        await ok(await http.post(f"/api/dispatch/support-history/grants/{shinkin}/withdraw", headers=a, json={}))
        assert [e for e in await entries(shinkin_staff) if e.get("topic") == "販路開拓"] == []
