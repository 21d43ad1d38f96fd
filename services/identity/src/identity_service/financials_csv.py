"""Financial data import from a CSV file (R-ANC-04, R-REC-06; layout documented in docs/financials-csv.md). Pure.

One header row, then one row per fiscal year (at most the three periods 直近・前期・前々期). Columns are named in
English or in Japanese as accounting software exports them; figures are whole yen, thousands separators allowed,
a negative written `-`, `▲` or `△`. Every problem is reported with its row number (the header is row 1), its
column and what is wrong; the caller applies nothing unless the list of errors is empty.
"""
from __future__ import annotations

import csv
import io
import re

MAX_ROWS = 3  # the three periods (R-ANC-04)
MAX_BYTES = 64 * 1024
YEN = 10**15

# column -> aliases (the first is the canonical field of the financials contract)
COLUMNS: dict[str, tuple[str, ...]] = {
    "fiscal_year": ("fiscal_year", "決算年度", "会計年度", "年度"),
    "sales": ("sales", "売上高"),
    "operating_profit": ("operating_profit", "営業利益"),
    "ordinary_profit": ("ordinary_profit", "経常利益"),
    "net_income": ("net_income", "当期純利益"),
    "total_assets": ("total_assets", "総資産", "資産合計"),
    "depreciation": ("depreciation", "減価償却費"),
    "cash": ("cash", "現預金", "現金及び預金"),
    "borrowings": ("borrowings", "有利子負債", "借入金"),
    "receivables": ("receivables", "売上債権"),
    "inventory": ("inventory", "棚卸資産"),
    "payables": ("payables", "買入債務", "仕入債務"),
    "equity": ("equity", "純資産", "純資産合計", "自己資本"),
    "employees": ("employees", "従業員数"),
}
ALIAS = {a: field for field, names in COLUMNS.items() for a in names}
_NUMBER = re.compile(r"^[-▲△]?\d{1,3}(,\d{3})*$|^[-▲△]?\d+$")


def decode(data: bytes) -> str | None:
    """UTF-8 (with or without BOM), else Shift_JIS (cp932) as many Japanese accounting exports are; None if neither."""
    for enc in ("utf-8-sig", "cp932"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return None


def _int(text: str) -> int | None:
    t = text.strip().replace("，", ",")
    if not _NUMBER.match(t):
        raise ValueError(f"'{text}' is not a whole number of yen (digits, optional thousands commas, - ▲ △ for "
                         "negatives)")
    neg = t[0] in "-▲△"
    n = int(t.lstrip("-▲△").replace(",", ""))
    return -n if neg else n


def parse(data: bytes, current_fiscal_year: int) -> tuple[list[dict], list[dict]]:
    """(periods, errors): the periods as the financials contract holds them, and every problem found as
    {"row", "column", "problem"} (row 1 is the header; column None when the whole row or file is concerned)."""
    errors: list[dict] = []

    def err(row: int, column: str | None, problem: str) -> None:
        errors.append({"row": row, "column": column, "problem": problem})

    if len(data) > MAX_BYTES:
        err(0, None, f"the file is larger than {MAX_BYTES // 1024} KiB")
        return [], errors
    text = decode(data)
    if text is None:
        err(0, None, "the file is neither UTF-8 nor Shift_JIS text")
        return [], errors
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        err(1, None, "the file is empty: a header row and one row per fiscal year are expected")
        return [], errors
    header = [h.strip() for h in rows[0]]
    fields: list[str | None] = []
    for h in header:
        f = ALIAS.get(h) or ALIAS.get(h.lower())
        if f is None:
            err(1, h, "unknown column (see docs/financials-csv.md for the layout)")
        elif f in fields:
            err(1, h, f"column {f} appears twice")
        fields.append(f)
    if "fiscal_year" not in fields:
        err(1, "fiscal_year", "the fiscal_year (決算年度) column is required")
    if errors:
        return [], errors
    body = rows[1:]
    if not body:
        err(2, None, "no data rows: one row per fiscal year is expected")
    if len(body) > MAX_ROWS:
        err(MAX_ROWS + 2, None, f"at most {MAX_ROWS} fiscal years (the three periods) per import")
    periods, seen = [], {}
    for n, raw in enumerate(body[:MAX_ROWS], start=2):
        if len(raw) != len(header):
            err(n, None, f"{len(raw)} values for {len(header)} columns")
            continue
        period: dict = {}
        for f, h, cell in zip(fields, header, raw):
            if not cell.strip():
                continue
            try:
                v = _int(cell)
            except ValueError as e:
                err(n, h, str(e))
                continue
            if f == "fiscal_year":
                if not 1900 <= v <= 2100:
                    err(n, h, f"{v} is not a fiscal year")
                    continue
                if v > current_fiscal_year:
                    err(n, h, f"FY{v} has not started: its figures cannot be entered")
                    continue
                if v in seen:
                    err(n, h, f"FY{v} already given in row {seen[v]}")
                    continue
                seen[v] = n
            elif f == "employees" and not 0 <= v <= 10_000_000:
                err(n, h, "employees must be between 0 and 10,000,000")
                continue
            elif abs(v) > YEN:
                err(n, h, "the amount is out of range")
                continue
            period[f] = v
        if "fiscal_year" not in period:
            if not any(e["row"] == n and e["column"] in ("fiscal_year", *COLUMNS["fiscal_year"]) for e in errors):
                err(n, header[fields.index("fiscal_year")], "the fiscal year is missing")
            continue
        periods.append(period)
    return (periods, []) if not errors else ([], errors)
