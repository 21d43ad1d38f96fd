"""Data-disclosure requests on real Kafka + MongoDB (R-ANC-05): an institution sees a business's profile only
after the business approves, and no longer after it revokes."""
from __future__ import annotations

import httpx
import pytest

from tests.integration.identity_support import bearer, signup, start_identity
from tests.integration.identity_support import OWNER, PROFILE, prove_prime


@pytest.fixture
def identity(services):
    return start_identity(services)


async def _staff(http, email: str, org_name: str) -> tuple[dict, str]:
    org = (await http.post("/organisations", headers=bearer(), json={"name": org_name, "kind": "institution",
                                                                     "institution_type": 2})).json()["org_id"]
    account = await signup(http, email, kind="institution")
    assert (await http.post(f"/organisations/{org}/staff", headers=bearer(),
                            json={"account_id": account["account_id"]})).status_code == 204
    return bearer(account["account_id"], ["institution"]), org


async def test_R_ANC_05_institution_sees_the_profile_only_while_the_business_approves(identity):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        bid = await prove_prime(http, OWNER)
        staff, org = await _staff(http, "advisor@cci.example.jp", "熊本商工会議所")
        rival, _ = await _staff(http, "advisor@other.example.jp", "別の商工会議所")

        r = await http.post("/disclosure-requests", headers=staff, json={"business_id": bid, "purpose": "経営相談の準備"})
        assert r.status_code == 201 and r.json()["status"] == "pending" and r.json()["org_name"] == "熊本商工会議所"
        rid = r.json()["request_id"]
        assert (await http.get(f"/disclosure-requests/{rid}/profile", headers=staff)).status_code == 403  # pending

        # the business sees who asks and why; nobody else decides for it
        asks = (await http.get(f"/businesses/{bid}/disclosure-requests", headers=OWNER)).json()
        assert [(a["org_id"], a["purpose"]) for a in asks] == [(org, "経営相談の準備")]
        assert (await http.post(f"/disclosure-requests/{rid}/approve", headers=bearer("owner-2", ["business"]))).status_code == 404
        assert (await http.post(f"/disclosure-requests/{rid}/approve", headers=staff)).status_code == 403

        assert (await http.post(f"/disclosure-requests/{rid}/approve", headers=OWNER)).json()["status"] == "approved"
        r = await http.get(f"/disclosure-requests/{rid}/profile", headers=staff)
        assert r.status_code == 200 and r.json()["name"] == PROFILE["name"] and len(r.json()["financials"]) == 3
        assert (await http.get(f"/disclosure-requests/{rid}/profile", headers=rival)).status_code == 404  # not theirs

        assert (await http.post(f"/disclosure-requests/{rid}/revoke", headers=OWNER)).json()["status"] == "revoked"
        r = await http.get(f"/disclosure-requests/{rid}/profile", headers=staff)
        assert r.status_code == 403 and PROFILE["name"] not in r.text
        assert (await http.post(f"/disclosure-requests/{rid}/approve", headers=OWNER)).status_code == 409

        # a rejected request never shows anything; the institution lists its requests and their state
        r2 = (await http.post("/disclosure-requests", headers=staff, json={"business_id": bid, "purpose": "再申請"})).json()
        assert (await http.post(f"/disclosure-requests/{r2['request_id']}/reject", headers=OWNER)).json()["status"] == "rejected"
        assert (await http.get(f"/disclosure-requests/{r2['request_id']}/profile", headers=staff)).status_code == 403
        assert sorted(d["status"] for d in (await http.get("/disclosure-requests", headers=staff)).json()) == ["rejected", "revoked"]
        # R-OPS-03: the lists page on, newest first, instead of stopping at a fixed count
        first = await http.get("/disclosure-requests", headers=staff, params={"limit": 1})
        assert [d["request_id"] for d in first.json()] == [r2["request_id"]] and first.headers["x-next-cursor"]
        second = await http.get("/disclosure-requests", headers=staff,
                                params={"limit": 1, "cursor": first.headers["x-next-cursor"]})
        assert [d["request_id"] for d in second.json()] == [rid] and "x-next-cursor" not in second.headers
        first = await http.get(f"/businesses/{bid}/disclosure-requests", headers=OWNER, params={"limit": 1})
        assert [d["request_id"] for d in first.json()] == [r2["request_id"]] and first.headers["x-next-cursor"]

        # staff of no organisation cannot ask
        loner = await signup(http, "loner@example.jp", kind="institution")
        r = await http.post("/disclosure-requests", headers=bearer(loner["account_id"], ["institution"]),
                            json={"business_id": bid, "purpose": "x"})
        assert r.status_code == 403 and "not linked" in r.json()["detail"]
