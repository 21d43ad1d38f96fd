"""Unit tests of the financial data CSV import (R-ANC-04, R-REC-06): layout, row-level errors, all or nothing."""
from identity_service import financials_csv as fc

GOOD = ("fiscal_year,sales,operating_profit,depreciation,cash,borrowings,receivables,inventory,payables,equity,"
        "total_assets,employees\n"
        "2024,\"120,000,000\",6000000,2000000,10000000,30000000,15000000,8000000,3000000,40000000,100000000,10\n"
        "2023,100000000,△500000,,,,,,,,,\n")


def test_R_REC_06_csv_import_reads_the_documented_layout():
    periods, errors = fc.parse(GOOD.encode(), 2026)
    assert errors == []
    assert periods[0] == {"fiscal_year": 2024, "sales": 120_000_000, "operating_profit": 6_000_000,
                          "depreciation": 2_000_000, "cash": 10_000_000, "borrowings": 30_000_000,
                          "receivables": 15_000_000, "inventory": 8_000_000, "payables": 3_000_000,
                          "equity": 40_000_000, "total_assets": 100_000_000, "employees": 10}
    assert periods[1] == {"fiscal_year": 2023, "sales": 100_000_000, "operating_profit": -500_000}


def test_R_REC_06_csv_import_japanese_headers_and_shift_jis():
    text = "決算年度,売上高,営業利益,純資産,総資産\r\n2024,1000,▲10,5,20\r\n"
    for data in (text.encode("cp932"), ("\ufeff" + text).encode("utf-8")):
        periods, errors = fc.parse(data, 2026)
        assert errors == [] and periods == [{"fiscal_year": 2024, "sales": 1000, "operating_profit": -10, "equity": 5,
                                             "total_assets": 20}]


def test_R_REC_06_csv_import_reports_every_bad_row_and_returns_nothing():
    bad = ("fiscal_year,sales,operating_profit\n"
           "2024,12x,1\n"       # row 2: not a number
           "2024,1,1\n"         # row 3: year repeated
           "2030,1\n")          # row 4: wrong number of values
    periods, errors = fc.parse(bad.encode(), 2026)
    assert periods == []
    assert {(e["row"], e["column"]) for e in errors} == {(2, "sales"), (3, "fiscal_year"), (4, None)}
    assert "not a whole number" in errors[0]["problem"]
    assert "row 2" in next(e for e in errors if e["row"] == 3)["problem"]
    future = fc.parse(b"fiscal_year,sales\n2030,1\n", 2026)[1]
    assert future == [{"row": 2, "column": "fiscal_year", "problem": "FY2030 has not started: its figures cannot be entered"}]


def test_R_REC_06_csv_import_header_and_file_errors():
    assert fc.parse(b"", 2026)[1][0]["row"] == 1
    unknown = fc.parse(b"fiscal_year,turnover\n2024,1\n", 2026)[1]
    assert unknown == [{"row": 1, "column": "turnover", "problem": unknown[0]["problem"]}]
    assert "fiscal_year" in fc.parse(b"sales\n1\n", 2026)[1][0]["problem"]
    assert "no data rows" in fc.parse(b"fiscal_year,sales\n", 2026)[1][0]["problem"]
    four = "fiscal_year,sales\n" + "".join(f"{y},1\n" for y in (2021, 2022, 2023, 2024))
    assert "at most 3" in fc.parse(four.encode(), 2026)[1][0]["problem"]
    assert "neither UTF-8" in fc.parse(b"\x81\x20\xff", 2026)[1][0]["problem"]
    missing_year = fc.parse(b"fiscal_year,sales\n,1\n", 2026)[1]
    assert missing_year == [{"row": 2, "column": "fiscal_year", "problem": "the fiscal year is missing"}]
