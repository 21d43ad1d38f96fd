"""R-OPS-03 bulk onboarding: the documented file layouts and the route's own rules for each row."""
from identity_service import bulk_import as bi

CSV = """corporate_number,external_id,name,prefecture,industry,employees,capital,sales_2023,operating_profit_2023,sales_2024,operating_profit_2024
7001000000000,,株式会社石井組,大分県,建設業,31,1000000,500000000,45000000,506000000,11500000
,sole-1,山田商店,鳥取県,小売業,2,,12000000,,13000000,300000
1001000000000,,株式会社誤番号,東京都,製造業,5,,,,,
"""


def test_R_OPS_03_csv_rows_carry_financial_periods_and_bad_rows_get_reasons(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text(CSV, encoding="utf-8")
    rows = list(bi.rows(p))
    assert [n for n, _ in rows] == [2, 3, 4]  # line numbers as a spreadsheet shows them
    first = rows[0][1]
    assert first["employees"] == 31 and first["financials"] == [
        {"fiscal_year": 2023, "sales": 500000000, "operating_profit": 45000000},
        {"fiscal_year": 2024, "sales": 506000000, "operating_profit": 11500000}]
    data, why = bi.check(first, 2026)
    assert why is None and [p["fiscal_year"] for p in data["financials"]] == [2024, 2023]
    assert bi.business_id(first) == "corp-7001000000000"
    sole = rows[1][1]
    assert bi.check(sole, 2026)[1] is None
    assert bi.business_id(sole) == bi.business_id({"external_id": "sole-1"}) != bi.business_id({"external_id": "sole-2"})
    assert bi.check(rows[2][1], 2026)[1].startswith("corporate_number")  # the check digit is wrong (R-ID-02)
    assert bi.check({"name": "x", "prefecture": "東京都", "industry": "製造業", "employees": 1}, 2026)[1].startswith("neither")
    future = {**sole, "financials": [{"fiscal_year": 2100, "sales": 1}]}
    assert bi.check(future, 2026)[1].startswith("financials")


def test_R_OPS_03_imported_events_have_stable_ids_so_a_redone_batch_repeats_them():
    from datetime import UTC, datetime
    data, _ = bi.check({"external_id": "e1", "name": "n", "prefecture": "東京都", "industry": "製造業", "employees": 3,
                        "financials": [{"fiscal_year": 2024, "sales": 10}]}, 2026)
    doc = bi.document(bi.business_id({"external_id": "e1"}), data, "op", datetime.now(UTC))
    a, b = bi.events(doc, "op"), bi.events(doc, "op")
    assert [e.event_id for e in a] == [e.event_id for e in b]
    assert [e.event_type for e in a] == ["identity.BusinessRegistered", "identity.BusinessProfileChanged"]
    assert a[1].payload["financials"][0]["sales"] == 10
