"""Financial data import from CSV on real Kafka + MongoDB (R-ANC-04, R-REC-06): row-level errors and nothing applied
when a row is bad; a good file becomes a new profile version with its provenance, and recommend learns the figures
from the event for the local benchmark (identity keeps owning the financials)."""
from __future__ import annotations

import httpx

from tests.integration.identity_support import FY, OWNER, bearer, prove_prime, start_identity
from tests.integration.test_recommend_service import prime
from tests.support import eventually

CSV = {"content-type": "text/csv; charset=utf-8"}
GOOD = (f"決算年度,売上高,営業利益,減価償却費,現預金,有利子負債,売上債権,棚卸資産,買入債務,純資産,総資産\n"
        f"{FY - 1},\"600,000,000\",36000000,4000000,50000000,120000000,90000000,30000000,20000000,200000000,500000000\n"
        f"{FY - 2},500000000,▲1000000,,,,,,,,\n")


async def test_R_REC_06_R_ANC_04_csv_import_all_or_nothing_with_provenance_and_learnt_by_recommend(services):
    identity = start_identity(services)
    recommend = services("recommend")
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        bid = await prove_prime(http, OWNER)
        url = f"/businesses/{bid}/financials/import"
        bad = f"fiscal_year,sales,operating_profit\n{FY - 1},1000,2\n{FY - 1},12x,3\n{FY + 1},1,1\n"
        r = await http.post(url, headers={**OWNER, **CSV}, content=bad.encode())
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
        assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [(3, "fiscal_year"), (3, "sales"),
                                                                          (4, "fiscal_year")]
        assert (await http.get(f"/businesses/{bid}", headers=OWNER)).json()["version"] == 1  # nothing applied
        r = await http.post(url, headers={**OWNER, "content-type": "application/json"}, content=b"{}")
        assert r.status_code == 415
        assert (await http.post(url, headers={**bearer("owner-2", ["business"]), **CSV},
                                content=GOOD.encode())).status_code == 404

        r = await http.post(url, headers={**OWNER, **CSV}, content=GOOD.encode("cp932"))
        assert r.status_code == 200, r.text
        latest = next(f for f in r.json()["financials"] if f["fiscal_year"] == FY - 1)
        assert (latest["sales"], latest["borrowings"], latest["equity"]) == (600_000_000, 120_000_000, 200_000_000)
        assert latest["source"].startswith("imported from CSV at ") and "owner-1" in latest["source"]
        history = (await http.get(f"/businesses/{bid}/history", headers=OWNER)).json()
        assert history[0]["version"] == 2 and history[0]["source"].startswith("imported from CSV at ")

    async with httpx.AsyncClient(base_url=recommend.url, timeout=15) as http:
        async def learnt():
            r = await http.get(f"/businesses/{bid}/benchmark", headers=prime("owner-1", bid))
            return r.json() if r.status_code == 200 and r.json()["fiscal_year"] == FY - 1 else None
        body = await eventually(learnt, timeout=40)
        by = {i["key"]: i for i in body["indicators"]}
        assert round(by["sales_growth"]["value"], 4) == 0.2
        assert round(by["ebitda_debt_multiple"]["value"], 4) == 1.75  # (120M − 50M) / (36M + 4M)
        assert round(by["working_capital_months"]["value"], 4) == 2.0  # (90M + 30M − 20M) / (600M / 12)
        assert round(by["equity_ratio"]["value"], 4) == 0.4
