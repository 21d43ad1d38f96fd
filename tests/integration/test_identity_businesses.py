"""Businesses with the common ID and the once-only profile on real Kafka + MongoDB (R-ID-02, R-ID-03, R-ANC-04)."""
from __future__ import annotations

import httpx
import pytest

from contracts import Envelope
from tests.integration.identity_support import FY, OWNER, PROFILE, bearer, prove_prime, start_identity
from tests.support import read_topic


@pytest.fixture
def identity(services):
    return start_identity(services)


async def test_R_ID_02_invalid_corporate_numbers_are_refused_with_a_problem_document(identity):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        for bad in ("7000012050003", "700001205000", "7000-1205-0002"):
            r = await http.post("/businesses", headers=OWNER, json={**PROFILE, "corporate_number": bad})
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
            assert "corporate_number" in r.json()["detail"], r.text
        # sole proprietors and founders have none and get a new id
        r = await http.post("/businesses", headers=bearer("founder-1", ["founder"]),
                            json={k: v for k, v in PROFILE.items() if k not in ("corporate_number", "financials")})
        assert r.status_code == 201 and r.json()["business_id"].startswith("biz-")
        assert r.json()["missing_periods"] == [FY - 1, FY - 2, FY - 3]


async def test_R_ID_03_R_ANC_04_profile_entered_once_every_change_versioned(identity, infra, ns):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        bid = await prove_prime(http, OWNER)  # R-ID-07: the letter's code makes the applicant the prime account
        biz = (await http.get(f"/businesses/{bid}", headers=OWNER)).json()
        assert (bid, biz["version"], biz["missing_periods"], len(biz["financials"])) == ("corp-7000012050002", 1, [], 3)
        assert (await http.post("/businesses", headers=OWNER, json=PROFILE)).status_code == 409  # once only

        r = await http.patch(f"/businesses/{bid}", headers=OWNER, json={
            "employees": 52, "expected_version": 1,
            "financials": [{"fiscal_year": FY, "sales": 100_000_000}, {"fiscal_year": FY - 1, "sales": 530_000_000}]})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2 and r.json()["employees"] == 52
        assert [(f["fiscal_year"], f["sales"]) for f in r.json()["financials"]] == [
            (FY, 100_000_000), (FY - 1, 530_000_000), (FY - 2, 480_000_000), (FY - 3, 455_000_000)]
        stale = await http.patch(f"/businesses/{bid}", headers=OWNER, json={"employees": 60, "expected_version": 1})
        assert stale.status_code == 409 and "version 2" in stale.json()["detail"]
        assert (await http.patch(f"/businesses/{bid}", headers=OWNER,
                                 json={"financials": [{"fiscal_year": FY + 1, "sales": 1}]})).status_code == 422
        assert (await http.patch(f"/businesses/{bid}", headers=OWNER, json={"name": None})).status_code == 422
        r = await http.patch(f"/businesses/{bid}", headers=OWNER, json={"address": "熊本県熊本市東区1-2"})
        assert r.json()["version"] == 3

        history = (await http.get(f"/businesses/{bid}/history", headers=OWNER)).json()
        assert [(h["version"], h["changed"]) for h in history] == [
            (3, ["address"]), (2, ["employees", "financials"]),
            (1, ["name", "postal_code", "address", "prefecture", "representative", "capital", "industry",
                 "employees", "financials"])]
        assert history[2]["profile"]["employees"] == 48 and history[1]["profile"]["employees"] == 52
        assert history[0]["by"] == "owner-1"

        # someone else's business is not visible; operators see it
        other = bearer("owner-2", ["business"])
        assert (await http.get(f"/businesses/{bid}", headers=other)).status_code == 404
        assert (await http.get(f"/businesses/{bid}/history", headers=other)).status_code == 404
        assert (await http.patch(f"/businesses/{bid}", headers=other, json={"employees": 1})).status_code == 404
        assert (await http.get(f"/businesses/{bid}", headers=bearer())).json()["version"] == 3
        assert [b["business_id"] for b in (await http.get("/businesses", headers=OWNER)).json()] == [bid]

    records = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=4)
    events = [Envelope.model_validate_json(r.value) for r in records]
    assert [e.event_type for e in events] == ["identity.BusinessRegistered", "identity.BindingChanged",
                                              "identity.BusinessProfileChanged", "identity.BusinessProfileChanged"]
    events = [e for e in events if e.event_type != "identity.BindingChanged"]
    changed = events[1].payload
    assert (changed["profile_version"], changed["changed"], changed["employees"], events[1].actor) == (
        2, ["employees", "financials"], 52, "owner-1")
    assert len(changed["financials"]) == 4 and all(e.key == bid for e in events)
