"""Who may call what on the experts service, table-driven over the app's own routes: a route added
without a row fails this test. Rules: R-EX-03 (own page only), R-EX-02 a / R-PF-04 (institutions),
R-EX-01 (agency reviews), R-ANC-02 (directory restricted by default), R-EX-07 (suggestions)."""
from __future__ import annotations

import httpx
import pytest

from contracts.vocab import RIGHTS, MemberRole
from tests.support import Namespace, ServiceProcess, token

EXPERT, INSTITUTION, AGENCY, OPERATOR = {"expert"}, {"institution"}, {"agency"}, {"operator"}
STAFF = AGENCY | OPERATOR
SEARCHERS = INSTITUTION | STAFF | {"bureau"}
PUBLIC_HEALTH = None  # no authentication at all

# (method, path) -> roles that pass authorisation (anonymous always gets 401 unless PUBLIC_HEALTH)
TABLE = {
    ("GET", "/healthz"): PUBLIC_HEALTH,
    ("GET", "/metrics"): PUBLIC_HEALTH,
    ("GET", "/readyz"): PUBLIC_HEALTH,
    ("POST", "/experts/me"): EXPERT,
    ("GET", "/experts/me"): EXPERT,
    ("GET", "/experts/me/history"): EXPERT,
    ("PUT", "/experts/me/profile"): EXPERT,
    ("PUT", "/experts/me/availability"): EXPERT,
    ("PUT", "/experts/me/capacity"): EXPERT,
    ("POST", "/experts/me/consents"): EXPERT,
    ("POST", "/experts/me/application"): EXPERT,
    ("POST", "/experts/me/renewal"): EXPERT,
    ("POST", "/experts/{expert_id}/recommendations"): INSTITUTION,
    ("GET", "/institutions/{org_id}/recommendees"): INSTITUTION,
    ("GET", "/reviews/applications"): STAFF,
    ("GET", "/reviews/renewals"): STAFF,
    ("GET", "/experts/{expert_id}/dossier"): STAFF,
    ("POST", "/experts/{expert_id}/review"): AGENCY,
    ("POST", "/experts/{expert_id}/renewal-review"): AGENCY,
    ("POST", "/experts/{expert_id}/suspend"): AGENCY,
    ("POST", "/experts/{expert_id}/reinstate"): AGENCY,
    ("POST", "/experts/{expert_id}/exit"): AGENCY,
    ("POST", "/registrations/expire-lapsed"): STAFF,
    ("GET", "/settings/directory"): STAFF,
    ("PUT", "/settings/directory"): OPERATOR,
    ("GET", "/experts"): SEARCHERS,
    ("GET", "/experts/suggestions"): SEARCHERS,  # R-EX-07, as restricted as the directory (R-ANC-02)
    ("GET", "/experts/{expert_id}"): SEARCHERS,
}
ROLES = ["expert", "institution", "agency", "operator", "bureau", "business", "founder"]
ORG = "org-1"


def headers(role: str | None, org: str = ORG) -> dict:
    if role is None:
        return {}
    orgs = [{"org_id": org, "platform_id": "pf", "member_role": "representative",
             "rights": sorted(RIGHTS[MemberRole.REPRESENTATIVE])}] if role == "institution" else []
    return {"authorization": f"Bearer {token(sub=f'{role}-9', roles=[role], orgs=orgs)}"}


@pytest.fixture(scope="module")
def svc(infra, tmp_path_factory):
    """One process for these tests; each uses its own subjects and organisations."""
    proc = ServiceProcess("experts", infra, Namespace(), tmp_path_factory.mktemp("experts-authz")).start()
    yield proc
    proc.stop()


def app_routes() -> set[tuple[str, str]]:
    from experts_service.app import create_app

    return {(m.upper(), path) for path, ops in create_app().openapi()["paths"].items() for m in ops}


def test_every_route_has_a_row():
    assert app_routes() == set(TABLE), "add a row to TABLE for every new endpoint (and remove stale ones)"


async def test_R_EX_03_authorisation_table(svc):
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        failures = []
        for (method, path), allowed in TABLE.items():
            url = path.replace("{expert_id}", "ex-unknown").replace("{org_id}", ORG)
            for role in [None, *ROLES]:
                r = await http.request(method, url, headers=headers(role), json={} if method in ("POST", "PUT") else None)
                if allowed is PUBLIC_HEALTH:
                    ok = r.status_code == 200
                elif role is None:
                    ok = r.status_code == 401
                elif role in allowed:
                    ok = r.status_code not in (401, 403)
                else:
                    ok = r.status_code == 403
                if not ok:
                    failures.append(f"{method} {path} as {role or 'anonymous'}: {r.status_code}")
        assert failures == []


async def test_R_EX_03_expert_edits_only_their_own_page(svc):
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        a, b = ({"authorization": f"Bearer {token(sub=s, roles=['expert'])}"} for s in ("expert-a", "expert-b"))
        r = await http.post("/experts/me", json={"name": "A さん", "fields": ["hr"]}, headers=a)
        assert r.status_code == 201
        a_id = r.json()["expert_id"]
        assert (await http.post("/experts/me", json={"name": "B さん"}, headers=b)).status_code == 201
        assert (await http.post("/experts/me", json={"name": "A again"}, headers=a)).status_code == 409
        r = await http.put("/experts/me/profile", json={"fields": ["tax"], "introduction": "B"}, headers=b)
        assert r.status_code == 200 and r.json()["expert_id"] != a_id
        mine = (await http.get("/experts/me", headers=a)).json()
        assert mine["version"] == 1 and mine["profile"]["fields"] == ["hr"]  # B's edit never touched A
        # there is no way to address another expert's page for writing
        for method, path in TABLE:
            if "{expert_id}" in path and method != "GET":
                r = await http.request(method, path.replace("{expert_id}", a_id), headers=b, json={"reason": "x"})
                assert r.status_code == 403, (method, path)


async def test_R_PF_04_institution_sees_and_recommends_only_for_its_own_organisations(svc):
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        own = headers("institution", org="org-mine")
        assert (await http.get("/institutions/org-mine/recommendees", headers=own)).status_code == 200
        assert (await http.get("/institutions/org-other/recommendees", headers=own)).status_code == 403
        r = await http.post("/experts/ex-1/recommendations", json={"org_id": "org-other"}, headers=own)
        assert r.status_code == 403 and "R-PF-04" in r.json()["detail"]
        body = {"org_id": "org-ind", "platform_id": "pf", "member_role": "individual",
                "rights": sorted(RIGHTS[MemberRole.INDIVIDUAL])}
        individual = {"authorization": f"Bearer {token(sub='ind', roles=['institution'], orgs=[body])}"}
        r = await http.post("/experts/ex-1/recommendations", json={"org_id": "org-ind"}, headers=individual)
        assert r.status_code == 403
