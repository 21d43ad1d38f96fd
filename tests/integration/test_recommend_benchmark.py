"""R-REC-06 on real Kafka + MongoDB: a business with known financials, learnt from identity events with peers of
the same industry, gets the six scores and its rank; the PDF report holds them in Japanese."""
from __future__ import annotations

import io
import uuid

import httpx
from pypdf import PdfReader

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, FinancialPeriod
from tests.integration.test_recommend_service import auth, prime, send
from tests.support import eventually

NAMES = ["売上高増加率", "営業利益率", "労働生産性", "EBITDA有利子負債倍率", "営業運転資本回転期間", "自己資本比率"]


def periods(k: float) -> list[FinancialPeriod]:
    """Three periods; `k` scales how good the figures are (higher k: better on all six indicators)."""
    return [FinancialPeriod(fiscal_year=2022, sales=100_000_000, operating_profit=3_000_000),
            FinancialPeriod(fiscal_year=2023, sales=100_000_000, operating_profit=int(3_000_000 * k)),
            FinancialPeriod(fiscal_year=2024, sales=int(100_000_000 * (1 + 0.05 * k)),
                            operating_profit=int(4_000_000 * k), depreciation=1_000_000,
                            borrowings=int(60_000_000 / k), cash=5_000_000, receivables=int(20_000_000 / k),
                            inventory=5_000_000, payables=5_000_000, equity=int(10_000_000 * k), total_assets=100_000_000)]


async def test_R_REC_06_six_scores_rank_and_pdf_report(infra, ns, services):
    svc = services("recommend")
    industry = f"精密機械{uuid.uuid4().hex[:6]}"  # an industry of this test's own: its peers are the ones below
    me, owner = f"biz-{uuid.uuid4().hex[:8]}", f"acc-{uuid.uuid4().hex[:8]}"
    envs = [Envelope.wrap(BusinessProfileChanged(business_id=f"peer-{uuid.uuid4().hex[:6]}", profile_version=1,
                                                 changed=["financials"], name="同業", prefecture="大阪府",
                                                 industry=industry, employees=10, financials=periods(k)),
                          producer="identity", actor=f"acc-peer-{i}") for i, k in enumerate((1, 1.2, 1.4, 1.6, 1.8))]
    envs.append(Envelope.wrap(BusinessProfileChanged(business_id=me, profile_version=1, changed=["financials"],
                                                     name="大阪精工株式会社", prefecture="大阪府", industry=industry,
                                                     employees=10, financials=periods(3)), producer="identity", actor=owner))
    await send(infra, ns, *envs)
    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def ranked():
            r = await http.get(f"/businesses/{me}/benchmark", headers=prime(owner, me))
            return r.json() if r.status_code == 200 and r.json()["indicators"][0]["peers"] == 5 else None
        body = await eventually(ranked, timeout=40)
        assert [i["name"] for i in body["indicators"]] == NAMES
        # better than every peer on all six indicators: 5 points each, rank A
        assert [i["score"] for i in body["indicators"]] == [5] * 6, body
        assert body["total"] == 30 and body["rank"] == "A" and body["fiscal_year"] == 2024
        assert [p["fiscal_year"] for p in body["trend"]] == [2022, 2023, 2024]
        assert body["trend"][0]["indicators"]["ebitda_debt_multiple"]["reason"]  # FY2022 has no balance sheet

        r = await http.get(f"/businesses/{me}/benchmark.pdf", headers=prime(owner, me))
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        text = PdfReader(io.BytesIO(r.content)).pages[0].extract_text()
        for name in NAMES:
            assert name in text
        assert "大阪精工株式会社" in text and "ローカルベンチマーク" in text  # the Japanese text round-trips
        assert "総合評価点: 30点" in text and "評価: A" in text and text.count("5点") >= 6

        # same access rule as the diagnosis: another business's account is refused, an operator may read
        r = await http.get(f"/businesses/{me}/benchmark.pdf", headers=auth("acc-other", "business"))
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        r = await http.get(f"/businesses/{me}/benchmark", headers=auth("op-1", "operator"))
        assert r.status_code == 200 and r.json()["rank"] == "A"
