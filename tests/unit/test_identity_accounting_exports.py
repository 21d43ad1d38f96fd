"""Unit tests of the journal import from accounting-software layouts (R-ANC-04, R-REC-06): 弥生インポート形式,
マネーフォワード クラウド会計 仕訳帳, freee形式 仕訳 — summed per fiscal year, row-level errors, all or nothing."""
import re
from datetime import date

from identity_service import accounting_exports as ax

TODAY = date(2026, 11, 30)  # FY2025 (Apr 2025–Mar 2026) has ended, FY2026 has not

YAYOI_HEADER = ",".join(ax.YAYOI_COLUMNS) + "\n"


def yayoi(flag, day, debit, d_amount, credit, c_amount, d_tax=0, c_tax=0, closing=""):
    """One 弥生インポート形式 line: the 25 columns in the vendor's order."""
    return (f"{flag},,{closing},{day},{debit},,,対象外,{d_amount},{d_tax},{credit},,,対象外,{c_amount},{c_tax},"
            f"摘要,,,0,,,0,0,no\n")


YAYOI_GOOD = (
    yayoi(2000, "2024/04/10", "売掛金", 1_100_000, "売上高", 1_100_000, 100_000, 100_000)   # sales 1,000,000 net of tax
    + yayoi(2000, "R06/05/31", "給料手当", 300_000, "普通預金", 300_000)
    + yayoi(2000, "20240601", "仕入高", 200_000, "買掛金", 200_000)
    + yayoi(2000, "2024/7/1", "支払利息", 10_000, "普通預金", 10_000)
    + yayoi(2110, "2025/03/31", "減価償却費", 50_000, "諸口", 0, closing="本決")            # a two-line slip:
    + yayoi(2101, "", "", 0, "工具器具備品", 50_000, closing="本決")                      # the date is the slip's
    + yayoi(2000, "2025/03/31", "法人税、住民税及び事業税", 70_000, "未払法人税等", 70_000, closing="本決")
    + yayoi(2000, "2023/12/01", "売掛金", 500_000, "売上高", 500_000)                     # FY2023
    + yayoi(2000, "H31/04/01", "売上高", 20_000, "売掛金", 20_000)                       # a return: FY2019
)


def test_R_REC_06_yayoi_journal_is_summed_into_each_fiscal_years_profit_and_loss():
    for data in (YAYOI_GOOD.encode("cp932"), (YAYOI_HEADER + YAYOI_GOOD).encode("utf-8-sig")):
        assert ax.detect(data) == "yayoi"
        periods, errors = ax.parse(data, "yayoi", TODAY)
        assert errors == []
        assert periods == [
            {"fiscal_year": 2024, "sales": 1_000_000, "operating_profit": 450_000, "ordinary_profit": 440_000,
             "net_income": 370_000, "depreciation": 50_000},
            {"fiscal_year": 2023, "sales": 500_000, "operating_profit": 500_000, "ordinary_profit": 500_000,
             "net_income": 500_000, "depreciation": 0},
            {"fiscal_year": 2019, "sales": -20_000, "operating_profit": -20_000, "ordinary_profit": -20_000,
             "net_income": -20_000, "depreciation": 0}]


def test_R_REC_06_yayoi_every_bad_line_is_reported_with_its_line_and_nothing_returned():
    bad = (yayoi(2000, "2024/04/10", "売掛金", 1000, "売上高", 1000)
           + yayoi(9999, "2024/04/10", "売掛金", 1000, "売上高", 1000)      # line 2: not a 識別フラグ
           + yayoi(2000, "2024/02/30", "売掛金", 1000, "売上高", 1000)      # line 3: no such day
           + yayoi(2000, "2024/04/10", "謎の科目", 1000, "売上高", 1000)    # line 4: account not in the table
           + yayoi(2000, "2024/04/10", "売掛金", "12x", "売上高", 1000)     # line 5: not a number
           + "2000,,,2024/04/10,売掛金,1000\n")                            # line 6: too few columns
    periods, errors = ax.parse(bad.encode("cp932"), "yayoi", TODAY)
    assert periods == []
    assert [(e["row"], e["column"]) for e in errors] == [(2, "識別フラグ"), (3, "取引日付"), (4, "借方勘定科目"),
                                                          (5, "借方金額"), (6, None)]
    assert "謎の科目" in errors[2]["problem"] and "table of accounts" in errors[2]["problem"]
    assert "25 columns" in errors[4]["problem"]


MF_HEADER = ("取引No,取引日,借方勘定科目,借方補助科目,借方部門,借方取引先,借方税区分,借方インボイス,借方金額(円),借方税額,"
             "貸方勘定科目,貸方補助科目,貸方部門,貸方取引先,貸方税区分,貸方インボイス,貸方金額(円),貸方税額,摘要,仕訳メモ,"
             "タグ,MF仕訳タイプ,決算整理仕訳,作成日時,作成者,最終更新日時,最終更新者\n")


def mf(no, day, debit, d_amount, credit, c_amount, d_tax="", c_tax=""):
    return (f"{no},{day},{debit},,,,対象外,,{d_amount},{d_tax},{credit},,,,対象外,,{c_amount},{c_tax},摘要,,,,,"
            f"2025/04/01 10:00,x,2025/04/01 10:00,x\n")


def test_R_REC_06_moneyforward_journal_with_compound_entries():
    data = (MF_HEADER
            + mf(1, "2025/04/15", "売掛金", '"2,200,000"', "売上高", '"2,200,000"', c_tax=200_000)
            + mf(2, "2025/06/30", "地代家賃", 600_000, "普通預金", 800_000)     # a compound entry of three lines
            + mf(2, "2025/06/30", "外注費", 200_000, "", "")
            + mf(3, "2026/03/31", "雑損失", 5_000, "現金", 5_000)
            + mf(4, "2026/03/31", "普通預金", 30_000, "固定資産売却益", 30_000)).encode("utf-8-sig")
    assert ax.detect(data) == "moneyforward"
    assert ax.parse(data, "moneyforward", TODAY) == ([
        {"fiscal_year": 2025, "sales": 2_000_000, "operating_profit": 1_200_000, "ordinary_profit": 1_195_000,
         "net_income": 1_225_000, "depreciation": 0}], [])


def test_R_REC_06_moneyforward_missing_columns_and_bad_rows():
    no_amount = "取引No,取引日,借方勘定科目,貸方勘定科目,貸方金額(円)\n1,2025/04/01,現金,売上高,1\n"
    errors = ax.parse(no_amount.encode(), "moneyforward", TODAY)[1]
    assert errors == [{"row": 1, "column": "借方金額(円)", "problem": errors[0]["problem"]}]
    bad = MF_HEADER + mf(1, "", "売掛金", 1, "売上高", 1) + mf(2, "2025/04/01", "", 5, "売上高", 5)
    errors = ax.parse(bad.encode(), "moneyforward", TODAY)[1]
    assert [(e["row"], e["column"]) for e in errors] == [(2, "取引日"), (3, "借方勘定科目")]
    assert errors[0]["problem"] == "the date is missing" and "without an account" in errors[1]["problem"]


FREEE_HEADER = ("[表題行],日付,伝票No.,借方勘定科目,借方補助科目,借方部門,借方セグメント1,借方セグメント2,借方セグメント3,"
                "借方税区分,借方金額,借方税額,貸方勘定科目,貸方補助科目,貸方部門,貸方セグメント1,貸方セグメント2,"
                "貸方セグメント3,貸方税区分,貸方金額,貸方税額,摘要\n")


def freee(day, no, debit, d_amount, credit, c_amount, mark="[明細行]"):
    return f"{mark},{day},{no},{debit},,,,,,対象外,{d_amount},0,{credit},,,,,,対象外,{c_amount},0,摘要\n"


def test_R_REC_06_freee_journal_with_a_slip_and_japanese_era_dates():
    data = (FREEE_HEADER
            + freee("平成31年4月1日", 1, "売掛金", 900_000, "売上高", 900_000)
            + freee("令和元年5月1日", 2, "旅費交通費", 100_000, "普通預金", 150_000)
            + freee("", 2, "通信費", 50_000, "", "")                         # the slip's second line: its date
            + freee("2020/03/31", 3, "減価償却費", 40_000, "減価償却累計額", 40_000)).encode("cp932")
    assert ax.detect(data) == "freee"
    assert ax.parse(data, "freee", TODAY) == ([
        {"fiscal_year": 2019, "sales": 900_000, "operating_profit": 710_000, "ordinary_profit": 710_000,
         "net_income": 710_000, "depreciation": 40_000}], [])


def test_R_REC_06_freee_rows_must_be_marked_and_dated():
    data = (FREEE_HEADER + freee("2024/04/01", 1, "現金", 1, "売上高", 1, mark="")
            + freee("2024/13/31", 2, "現金", 1, "売上高", 1)).encode()
    errors = ax.parse(data, "freee", TODAY)[1]
    assert [(e["row"], e["column"]) for e in errors] == [(2, "[表題行]"), (3, "日付")]
    assert "[明細行]" in errors[0]["problem"] and "is not a date" in errors[1]["problem"]
    unmarked = FREEE_HEADER.replace("[表題行],", "x,")
    assert ax.parse((unmarked + freee("2024/04/01", 1, "現金", 1, "売上高", 1)).encode(), "freee", TODAY)[1][0][
        "column"] == "x"


def test_R_REC_06_journal_fiscal_years_ended_and_at_most_three():
    open_year = yayoi(2000, "2026/04/01", "現金", 1, "売上高", 1)
    errors = ax.parse((YAYOI_GOOD.split("\n", 1)[0] + "\n" + open_year).encode(), "yayoi", TODAY)[1]
    assert len(errors) == 1 and errors[0]["row"] == 2 and "FY2026 has not ended" in errors[0]["problem"]
    four = "".join(yayoi(2000, f"{y}/06/01", "現金", 1, "売上高", 1) for y in (2020, 2021, 2022, 2023))
    errors = ax.parse(four.encode(), "yayoi", TODAY)[1]
    assert len(errors) == 1 and "4 fiscal years" in errors[0]["problem"] and "at most 3" in errors[0]["problem"]
    # a business whose fiscal year is the calendar year: FY2025 ends 2025-12-31
    jan = yayoi(2000, "2025/01/15", "現金", 7, "売上高", 7)
    assert ax.parse(jan.encode(), "yayoi", TODAY, start_month=1)[0][0]["fiscal_year"] == 2025
    assert ax.parse(jan.encode(), "yayoi", TODAY)[0][0]["fiscal_year"] == 2024


def test_R_REC_06_layout_detection_and_file_errors():
    assert ax.detect("決算年度,売上高\n2024,1\n".encode()) == "portal"
    assert ax.detect(b"") == "portal"
    assert ax.parse(b"", "yayoi", TODAY)[1][0]["row"] == 1
    assert "neither UTF-8" in ax.parse(b"\x81\x20\xff", "freee", TODAY)[1][0]["problem"]
    assert "larger than" in ax.parse(b"x" * (ax.MAX_BYTES + 1), "yayoi", TODAY)[1][0]["problem"]
    assert "no journal lines" in ax.parse(MF_HEADER.encode(), "moneyforward", TODAY)[1][0]["problem"]
    many = "".join(yayoi(1, "2024/04/01", "現金", 1, "売上高", 1) for _ in range(ax.MAX_ERRORS + 5))
    errors = ax.parse(many.encode(), "yayoi", TODAY)[1]
    assert len(errors) == ax.MAX_ERRORS + 1 and errors[-1]["row"] == 0


def test_R_REC_06_dates_in_the_vendors_forms():
    for text in ("2019/07/01", "2019/7/1", "20190701", "2019-07-01", "2019年7月1日", "R01/07/01", "R.01/7/1",
                 "令和元年7月1日", "R1/7/1"):
        assert ax.parse_date(text) == date(2019, 7, 1), text
    assert ax.parse_date("H30/7/1") == ax.parse_date("平成30年7月1日") == date(2018, 7, 1)
    assert ax.fiscal_year_end(2024) == date(2025, 3, 31) and ax.fiscal_year_end(2024, 1) == date(2024, 12, 31)


def test_R_REC_06_the_table_of_accounts_is_the_documented_one():
    from pathlib import Path
    doc = (Path(__file__).parents[2] / "docs" / "financials-csv.md").read_text()
    table = doc[doc.index("## The table of accounts"):]
    documented = set(re.findall(r"`([^`]+)`", table.split("\n", 3)[-1]))
    assert documented == set(ax.ACCOUNTS), documented ^ set(ax.ACCOUNTS)
