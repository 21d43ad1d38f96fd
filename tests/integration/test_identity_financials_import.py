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


def _yayoi(flag, day, debit, amount, credit, d_tax=0, c_tax=0):
    """One line of 弥生会計's 弥生インポート形式 (25 columns, no header)."""
    return (f"{flag},,,{day},{debit},,,対象外,{amount},{d_tax},{credit},,,対象外,{amount},{c_tax},摘要,,,0,,,0,0,no\r\n")


async def test_R_REC_06_R_ANC_04_accounting_journal_import_through_the_route_keeps_the_balance_sheet(services):
    identity = start_identity(services)
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        bid = await prove_prime(http, OWNER)
        url = f"/businesses/{bid}/financials/import"
        assert (await http.post(url, headers={**OWNER, **CSV}, content=GOOD.encode())).status_code == 200  # v2

        bad = (_yayoi(2000, f"{FY - 1}/06/01", "売掛金", 1000, "売上高")
               + _yayoi(2000, f"{FY - 1}/06/02", "謎の科目", 1000, "普通預金"))
        r = await http.post(url, headers={**OWNER, **CSV}, content=bad.encode("cp932"))
        assert r.status_code == 422, r.text
        assert r.json()["layout"] == "yayoi"
        assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [(2, "借方勘定科目")]
        assert (await http.get(f"/businesses/{bid}", headers=OWNER)).json()["version"] == 2  # nothing applied

        journal = (_yayoi(2000, f"{FY - 1}/06/01", "売掛金", 770_000_000, "売上高", c_tax=70_000_000)
                   + _yayoi(2000, f"{FY - 1}/07/01", "給料手当", 600_000_000, "普通預金")
                   + _yayoi(2000, f"{FY}/03/31", "減価償却費", 5_000_000, "工具器具備品"))
        r = await http.post(f"{url}?filename=shiwake.csv", headers={**OWNER, **CSV}, content=journal.encode("cp932"))
        assert r.status_code == 200, r.text
        latest = next(f for f in r.json()["financials"] if f["fiscal_year"] == FY - 1)
        assert (latest["sales"], latest["operating_profit"], latest["depreciation"]) == (700_000_000, 95_000_000,
                                                                                          5_000_000)
        assert (latest["borrowings"], latest["equity"]) == (120_000_000, 200_000_000)  # kept from the CSV import
        assert latest["source"].startswith("imported from 弥生インポート形式 file shiwake.csv at ")
        older = next(f for f in r.json()["financials"] if f["fiscal_year"] == FY - 2)
        assert older["sales"] == 500_000_000  # a year the journal does not hold stays as it was
        history = (await http.get(f"/businesses/{bid}/history", headers=OWNER)).json()
        assert history[0]["version"] == 3 and "弥生インポート形式" in history[0]["source"]
