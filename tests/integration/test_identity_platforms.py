"""Organisations, staff and regional platforms on real Kafka + MongoDB: R-PF-01..04 through HTTP, the events
other services learn roles from, the token's `orgs` claim, and least privilege by place (R-PF-05)."""
from __future__ import annotations

from datetime import date

import httpx
import jwt
import pytest

from contracts import Envelope
from contracts.vocab import fiscal_year
from tests.integration.identity_support import bearer, password_login, portal_client, signup, start_identity
from tests.support import read_topic

FY = fiscal_year(date.today())
# minted at import: valid for a whole suite run; a bureau account acts for its block (R-PF-05)
BUREAU = bearer("bureau-kanto-officer", ["bureau"], ttl=6 * 3600, bureau_id="bureau-kanto")


@pytest.fixture
def identity(services):
    return start_identity(services)


async def _org(http, name, kind="institution", institution_type=None) -> str:
    r = await http.post("/organisations", headers=BUREAU, json={"name": name, "kind": kind,
                                                                "institution_type": institution_type})
    assert r.status_code == 201, r.text
    return r.json()["org_id"]


async def test_R_PF_01_R_PF_02_R_PF_03_R_PF_04_platform_lifecycle_events_and_token_rights(identity, infra, ns):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        shokokai = await _org(http, "○○町商工会", institution_type=1)
        chamber = await _org(http, "○○商工会議所", institution_type=2)
        bank = await _org(http, "○○信用金庫", institution_type=8)
        plain = await _org(http, "○○よろず支援拠点")
        corp = await _org(http, "株式会社コンサル", kind="body")
        bad_type = await http.post("/organisations", headers=BUREAU, json={"name": "x", "kind": "body", "institution_type": 3})
        assert bad_type.status_code == 422 and "institution_type" in bad_type.json()["detail"]

        # R-PF-01: three institutions (the body does not count) are refused, with the reason
        r = await http.post("/platforms", headers=BUREAU, json={
            "name": "○○地域PF", "bureau_id": "bureau-kanto", "fiscal_year": FY, "representative_id": shokokai,
            "member_ids": [shokokai, chamber, bank, corp]})
        assert r.status_code == 422 and "at least 4 member institutions" in r.json()["detail"]
        # R-PF-02: the representative must be dispatch-capable
        r = await http.post("/platforms", headers=BUREAU, json={
            "name": "○○地域PF", "bureau_id": "bureau-kanto", "fiscal_year": FY, "representative_id": plain,
            "member_ids": [shokokai, chamber, bank, plain]})
        assert r.status_code == 422 and "R-PF-02" in r.json()["detail"]

        r = await http.post("/platforms", headers=BUREAU, json={
            "name": "○○地域PF", "bureau_id": "bureau-kanto", "fiscal_year": FY, "representative_id": shokokai,
            "member_ids": [shokokai, chamber, bank, plain]})
        assert r.status_code == 201, r.text
        platform = r.json()
        pid = platform["platform_id"]
        roles = {m["org_id"]: m["member_role"] for m in platform["members"]}
        assert roles == {shokokai: "representative", chamber: "dispatch_member", bank: "dispatch_member",
                         plain: "institution"}

        # members added later; a dispatch-capable newcomer is notified to the bureau (R-PF-03)
        late = await _org(http, "○○銀行", institution_type=8)
        r = await http.post(f"/platforms/{pid}/members", headers=BUREAU, json={"org_id": late})
        assert r.status_code == 200 and {"org_id": late, "member_role": "dispatch_member",
                                         "rights": ["joint_activities", "manage_budget", "recommend_experts",
                                                    "request_dispatch"]} in r.json()["members"]
        assert (await http.post(f"/platforms/{pid}/members", headers=BUREAU, json={"org_id": corp})).status_code == 200
        assert (await http.post(f"/platforms/{pid}/members", headers=BUREAU, json={"org_id": corp})).status_code == 409
        # leaving is refused if the platform would fall below R-PF-01, allowed otherwise
        r = await http.delete(f"/platforms/{pid}/members/{shokokai}", headers=BUREAU)
        assert r.status_code == 409 and "representative" in r.json()["detail"]
        assert (await http.delete(f"/platforms/{pid}/members/{corp}", headers=BUREAU)).status_code == 200

        # R-PF-03: renewal per fiscal year; not twice for the same year
        assert (await http.post(f"/platforms/{pid}/renewals", headers=BUREAU, json={"fiscal_year": FY})).status_code == 409
        r = await http.post(f"/platforms/{pid}/renewals", headers=BUREAU, json={"fiscal_year": FY + 1})
        assert r.status_code == 200 and r.json()["fiscal_years"] == [FY, FY + 1]
        assert (await http.post(f"/platforms/{pid}/renewals", headers=BUREAU, json={"fiscal_year": FY + 2})).status_code == 200
        r = await http.post(f"/platforms/{pid}/renewals", headers=BUREAU, json={"fiscal_year": FY + 3})
        assert r.status_code == 409 and "review" in r.json()["detail"]
        r = await http.post(f"/platforms/{pid}/renewals", headers=BUREAU, json={"fiscal_year": FY + 3, "review_approved": True})
        assert r.status_code == 200 and r.json()["last_review_year"] == FY + 3

        # R-PF-04 in the token: staff of the plain institution recommend experts but may not request dispatches
        staff = await signup(http, "staff@yorozu.example.jp", kind="institution")
        assert (await http.post(f"/organisations/{plain}/staff", headers=BUREAU,
                                json={"account_id": staff["account_id"]})).status_code == 204
        portal = await portal_client(http)
        tokens = await password_login(http, portal["client_id"], "staff@yorozu.example.jp")
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["orgs"] == [{"org_id": plain, "platform_id": pid, "member_role": "institution",
                                   "rights": ["joint_activities", "recommend_experts"]}]
        me = await http.get("/accounts/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["org_id"] == plain

    records = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=15)
    events = [Envelope.model_validate_json(r.value) for r in records]
    types = [e.event_type for e in events]
    assert types.count("identity.OrganisationRegistered") == 6
    assert types.count("identity.PlatformRegistered") == 4  # registration + three renewals
    changes = [e.payload for e in events if e.event_type == "identity.MembershipChanged"]
    assert changes == [{"platform_id": pid, "org_id": late, "member_role": "dispatch_member"},
                       {"platform_id": pid, "org_id": corp, "member_role": "body"},
                       {"platform_id": pid, "org_id": corp, "member_role": None}]
    first = next(e for e in events if e.event_type == "identity.PlatformRegistered")
    assert first.payload["fiscal_year"] == FY and first.payload["representative_id"] == shokokai
    assert first.actor == "bureau-kanto-officer"
    notices = [Envelope.model_validate_json(r.value)
               for r in await read_topic(infra.kafka, ns.topic("notifications.commands"), min_count=1)]
    assert [(n.payload["recipient_id"], n.payload["params"]["org_id"]) for n in notices] == [("bureau-kanto", late)]


KYUSHU = bearer("bureau-kyushu-officer", ["bureau"], ttl=6 * 3600, bureau_id="bureau-kyushu")
NO_BLOCK = bearer("bureau-nowhere-officer", ["bureau"], ttl=6 * 3600)  # a bureau token without bureau_id


def _refused(r: httpx.Response, title: str, *words: str) -> None:
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", r.text
    problem = r.json()
    assert problem["title"] == title and "R-PF-05" in problem["detail"], problem
    assert all(w in problem["detail"] for w in words), problem


async def test_R_PF_05_a_bureau_acts_only_on_its_own_block_s_platforms(identity):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        # organisations belong to no block: each bureau registers its own
        kanto = [await _org(http, n, institution_type=t) for n, t in (("関東商工会", 1), ("関東会議所", 2), ("関東信金", 8))]
        kanto.append(await _org(http, "関東拠点"))
        kyushu = []
        for name, t in (("九州商工会", 1), ("九州会議所", 2), ("九州信金", 8), ("九州拠点", None)):
            r = await http.post("/organisations", headers=KYUSHU, json={"name": name, "kind": "institution",
                                                                        "institution_type": t})
            assert r.status_code == 201, r.text
            kyushu.append(r.json()["org_id"])

        # registering: for the bureau's own block only, which is also the default
        body = {"name": "関東PF", "fiscal_year": FY, "representative_id": kanto[0], "member_ids": kanto}
        _refused(await http.post("/platforms", headers=BUREAU, json={**body, "bureau_id": "bureau-kyushu"}),
                 "Not your block", "block bureau-kyushu", "block bureau-kanto")
        r = await http.post("/platforms", headers=BUREAU, json=body)
        assert r.status_code == 201 and r.json()["bureau_id"] == "bureau-kanto", r.text
        pid = r.json()["platform_id"]
        r = await http.post("/platforms", headers=KYUSHU, json={"name": "九州PF", "bureau_id": "bureau-kyushu",
                                                                "fiscal_year": FY, "representative_id": kyushu[0],
                                                                "member_ids": kyushu})
        assert r.status_code == 201, r.text
        kyushu_pid = r.json()["platform_id"]
        r = await http.post("/platforms", headers=bearer(), json=body)  # an operator names the block
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"

        # every platform route: the other block's bureau is refused, nothing changes; the block's own bureau acts
        late = await _org(http, "関東銀行", institution_type=8)
        calls = [("GET", f"/platforms/{pid}", None), ("POST", f"/platforms/{pid}/renewals", {"fiscal_year": FY + 1}),
                 ("POST", f"/platforms/{pid}/members", {"org_id": late}),
                 ("DELETE", f"/platforms/{pid}/members/{late}", None)]
        for method, path, json_body in calls:
            _refused(await http.request(method, path, headers=KYUSHU, json=json_body), "Not your block",
                     "block bureau-kanto", "block bureau-kyushu")
            _refused(await http.request(method, path, headers=NO_BLOCK, json=json_body), "No block", "bureau_id")
        r = await http.get(f"/platforms/{pid}", headers=BUREAU)
        assert r.status_code == 200 and r.json()["fiscal_years"] == [FY]
        assert late not in [m["org_id"] for m in r.json()["members"]]
        for method, path, json_body in calls:
            r = await http.request(method, path, headers=BUREAU, json=json_body)
            assert r.status_code == 200, (method, path, r.text)
        _refused(await http.get(f"/platforms/{kyushu_pid}", headers=BUREAU), "Not your block", "block bureau-kyushu")

        # national scope: operators act on every block, the agency reads every block (and changes nothing)
        assert (await http.get(f"/platforms/{kyushu_pid}", headers=bearer("ag-1", ["agency"]))).status_code == 200
        r = await http.post(f"/platforms/{kyushu_pid}/renewals", headers=bearer("ag-1", ["agency"]),
                            json={"fiscal_year": FY + 1})
        assert r.status_code == 403
        r = await http.post(f"/platforms/{kyushu_pid}/renewals", headers=bearer(), json={"fiscal_year": FY + 1})
        assert r.status_code == 200, r.text

        # a bureau token without a block is refused everywhere, with the reason
        _refused(await http.post("/organisations", headers=NO_BLOCK, json={"name": "x", "kind": "body"}), "No block")
        _refused(await http.get(f"/organisations/{kanto[0]}", headers=NO_BLOCK), "No block")
        _refused(await http.post("/platforms", headers=NO_BLOCK, json=body), "No block")

        # linking staff hands them the organisation's rights: only within the bureau's block
        staff = (await signup(http, "staff@kyushu-shokokai.example.jp", kind="institution"))["account_id"]
        _refused(await http.post(f"/organisations/{kyushu[1]}/staff", headers=BUREAU, json={"account_id": staff}),
                 "Not your block", "block bureau-kyushu")
        assert (await http.post(f"/organisations/{kyushu[1]}/staff", headers=KYUSHU,
                                json={"account_id": staff})).status_code == 204
        # ... nor may another block's bureau take a linked account away from its organisation
        _refused(await http.post(f"/organisations/{kanto[1]}/staff", headers=BUREAU, json={"account_id": staff}),
                 "Not your block", "block bureau-kyushu")
        fresh = await _org(http, "新設の支援機関")  # a member of no platform yet: any bureau onboards it
        newcomer = (await signup(http, "staff@new-org.example.jp", kind="institution"))["account_id"]
        assert (await http.post(f"/organisations/{fresh}/staff", headers=BUREAU,
                                json={"account_id": newcomer})).status_code == 204
