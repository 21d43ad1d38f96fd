"""Numbers beyond what the services accept (1e20, or 10**20 written out, which does not fit MongoDB's 64-bit
integers) get a 422 problem document naming the field, never a 500, in query, path and body, on real services."""
from __future__ import annotations

import httpx

from tests.support import token

HUGE = "100000000000000000000"  # 10**20, written out: JSON and query strings parse it as an integer

# service, role, method, path, raw JSON body (or None), the field the problem document must name
CASES = [
    ("budget", "bureau", "POST", "/frames",
     f'{{"fiscal_year": 2026, "platform_id": "p1", "fee": {HUGE}, "travel": 0}}', "fee"),
    ("budget", "operator", "GET", f"/reports?fiscal_year={HUGE}", None, "fiscal_year"),
    ("budget", "operator", "GET", f"/frames/frame-2026-p1/ledger?offset={HUGE}", None, "offset"),
    ("ratings", "agency", "POST", f"/classification/{HUGE}", None, "fiscal_year"),
    ("ratings", "agency", "GET", f"/experts/e1/evaluations?fiscal_year={HUGE}", None, "fiscal_year"),
    ("dispatch", "operator", "GET", f"/programmes/{HUGE}", None, "fiscal_year"),
    ("dispatch", "business", "GET", f"/businesses/b1/free-dispatches?fiscal_year={HUGE}", None, "fiscal_year"),
    ("dispatch", "business", "POST", "/requests", f'{{"travel_estimate": {HUGE}}}', "travel_estimate"),
    ("experts", "expert", "PUT", "/experts/me/profile", f'{{"expected_version": {HUGE}}}', "expected_version"),
    ("experts", "expert", "POST", "/experts/me/application",
     '{"evidence": [{"route": "sme_support", "years": 1e20}], "no_disqualification": true}', "evidence.0.years"),
]


async def test_numbers_beyond_the_bounds_get_a_422_problem_document_naming_the_field(services):
    urls = {name: services(name).url for name in ("budget", "ratings", "dispatch", "experts")}
    async with httpx.AsyncClient(timeout=10) as http:
        for service, role, method, path, body, field in CASES:
            headers = {"authorization": f"Bearer {token(sub='u1', roles=[role])}", "content-type": "application/json"}
            r = await http.request(method, urls[service] + path, content=body, headers=headers)
            case = f"{service} {method} {path}: {r.status_code} {r.text[:300]}"
            assert r.status_code == 422, case
            assert r.headers["content-type"] == "application/problem+json", case
            problem = r.json()
            assert [e for e in problem.get("errors", []) if e["field"] == field and "less than or equal" in e["message"]], case
            assert field in problem["detail"], case
