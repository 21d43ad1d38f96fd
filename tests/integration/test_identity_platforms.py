"""Organisations, staff and regional platforms on real Kafka + MongoDB: R-PF-01..04 through HTTP, the events
other services learn roles from, and the token's `orgs` claim."""
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
BUREAU = bearer("bureau-kanto-officer", ["bureau"], ttl=6 * 3600)  # minted at import: valid for a whole suite run


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
