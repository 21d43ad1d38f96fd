"""Financial figures from the journal CSV layouts of three accounting products (R-ANC-04, R-REC-06). Pure.

The layouts are the ones the vendors publish (sources in docs/financials-csv.md): 弥生会計's 弥生インポート形式 (25
columns in a fixed order, with or without a header row), マネーフォワード クラウド会計's 仕訳帳 (named columns from
取引No to 最終更新者) and freee会計's freee形式 仕訳 ([表題行] then rows marked [明細行]). Each holds one journal line
per row; the lines are summed per fiscal year into the profit-and-loss figures the profile keeps (sales, operating
profit, ordinary profit, net income, depreciation) through the table of account names `ACCOUNTS`. A journal cannot
say what the balance sheet held, so those figures are not touched. Every problem is reported with the file's line
number, its column and what is wrong; the caller applies nothing unless the list of errors is empty.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, timedelta

from identity_service.financials_csv import decode

MAX_BYTES = 5 * 1024 * 1024  # freee's own limit for this import; enough for a small business's year of journals
MAX_YEARS = 3  # the three periods (R-ANC-04)
MAX_ERRORS = 100  # beyond this a file is wrong as a whole; the first hundred say how
YEN = 10**15

# --- the account table: 勘定科目 → where it goes in the profit-and-loss statement --------------------------
# Names as the three products' default charts of accounts and the 財務諸表等規則 headings spell them.
# "bs" accounts belong to the balance sheet and are skipped; an account not in the table is an error, because
# guessing where it goes would change operating profit silently.
_GROUPS: dict[str, tuple[str, ...]] = {
    "sales": ("売上高", "売上", "商品売上高", "製品売上高", "役務収益", "完成工事高", "売上値引高", "売上戻り高",
              "売上割戻し高", "売上値引・戻り高"),
    "cogs": ("売上原価", "仕入高", "仕入", "商品仕入高", "仕入値引高", "仕入戻し高", "仕入割戻し高", "仕入値引・戻し高",
             "期首商品棚卸高", "期末商品棚卸高", "期首製品棚卸高", "期末製品棚卸高", "外注加工費", "完成工事原価"),
    "sga": ("販売費及び一般管理費", "役員報酬", "給料手当", "給与手当", "給料賃金", "賞与", "雑給", "退職金",
            "法定福利費", "福利厚生費", "採用教育費", "研修費", "外注費", "荷造運賃", "広告宣伝費", "販売促進費",
            "販売手数料", "交際費", "接待交際費", "会議費", "旅費交通費", "通信費", "消耗品費", "事務用品費",
            "修繕費", "水道光熱費", "新聞図書費", "諸会費", "支払手数料", "支払報酬", "支払報酬料", "車両費",
            "地代家賃", "賃借料", "リース料", "保険料", "租税公課", "寄付金", "研究開発費", "減価償却費",
            "長期前払費用償却", "貸倒損失", "貸倒引当金繰入額", "雑費"),
    "non_operating_income": ("営業外収益", "受取利息", "受取配当金", "有価証券売却益", "為替差益", "雑収入"),
    "non_operating_expense": ("営業外費用", "支払利息", "支払利息割引料", "手形売却損", "有価証券売却損", "為替差損",
                              "雑損失"),
    "extraordinary_gain": ("特別利益", "固定資産売却益", "投資有価証券売却益", "前期損益修正益"),
    "extraordinary_loss": ("特別損失", "固定資産売却損", "固定資産除却損", "投資有価証券売却損", "減損損失",
                           "災害損失", "前期損益修正損"),
    "income_taxes": ("法人税、住民税及び事業税", "法人税・住民税及び事業税", "法人税住民税及び事業税", "法人税等",
                     "法人税等調整額"),
    "bs": ("現金", "小口現金", "当座預金", "普通預金", "定期預金", "定期積金", "通知預金", "受取手形", "売掛金",
           "電子記録債権", "有価証券", "商品", "製品", "仕掛品", "原材料", "貯蔵品", "前渡金", "前払金", "立替金",
           "前払費用", "未収入金", "未収収益", "短期貸付金", "仮払金", "仮払消費税等", "仮払消費税", "仮払法人税等",
           "貸倒引当金", "建物", "建物附属設備", "構築物", "機械装置", "車両運搬具", "工具器具備品", "一括償却資産",
           "土地", "建設仮勘定", "減価償却累計額", "ソフトウェア", "のれん", "電話加入権", "投資有価証券", "出資金",
           "長期貸付金", "敷金", "差入保証金", "保険積立金", "長期前払費用", "繰延税金資産", "創立費", "開業費",
           "支払手形", "買掛金", "電子記録債務", "短期借入金", "未払金", "未払費用", "未払法人税等", "未払消費税等",
           "前受金", "預り金", "前受収益", "仮受金", "仮受消費税等", "仮受消費税", "賞与引当金", "長期借入金",
           "役員借入金", "退職給付引当金", "資本金", "資本準備金", "利益準備金", "繰越利益剰余金", "繰越利益",
           "別途積立金", "自己株式", "事業主貸", "事業主借", "元入金", "諸口"),
}
ACCOUNTS: dict[str, str] = {name: group for group, names in _GROUPS.items() for name in names}
_CREDIT_NATURE = {"sales", "non_operating_income", "extraordinary_gain"}  # a credit adds to these, a debit takes off
DEPRECIATION = "減価償却費"


@dataclass(frozen=True)
class Layout:
    key: str
    label: str  # how the provenance names it
    date: str
    voucher: str
    debit_account: str
    debit_amount: str
    debit_tax: str
    credit_account: str
    credit_amount: str
    credit_tax: str
    columns: tuple[str, ...] = ()  # the fixed order, for a layout read by position


# 弥生会計: 弥生インポート形式 (弥生会計 05 以降), support.yayoi-kk.co.jp/subcontents.html?page_id=18545
YAYOI_COLUMNS = ("識別フラグ", "伝票No.", "決算", "取引日付", "借方勘定科目", "借方補助科目", "借方部門", "借方税区分",
                 "借方金額", "借方税金額", "貸方勘定科目", "貸方補助科目", "貸方部門", "貸方税区分", "貸方金額",
                 "貸方税金額", "摘要", "番号", "期日", "タイプ", "生成元", "仕訳メモ", "付箋1", "付箋2", "調整")
YAYOI_FLAGS = {"2000", "2111", "2110", "2100", "2101"}  # 1-line entry, 1-line slip, first / middle / last of a slip
YAYOI = Layout("yayoi", "弥生インポート形式", "取引日付", "伝票No.", "借方勘定科目", "借方金額", "借方税金額",
               "貸方勘定科目", "貸方金額", "貸方税金額", columns=YAYOI_COLUMNS)
# マネーフォワード クラウド会計: 仕訳帳 import/export, biz.moneyforward.com/support/account/guide/import-books/ib01.html
MONEYFORWARD = Layout("moneyforward", "マネーフォワード クラウド会計 仕訳帳", "取引日", "取引No", "借方勘定科目",
                      "借方金額(円)", "借方税額", "貸方勘定科目", "貸方金額(円)", "貸方税額")
# freee会計: freee形式 仕訳, support.freee.co.jp/hc/ja/articles/202847920
FREEE = Layout("freee", "freee形式 仕訳", "日付", "伝票No.", "借方勘定科目", "借方金額", "借方税額", "貸方勘定科目",
               "貸方金額", "貸方税額")
LAYOUTS = {lay.key: lay for lay in (YAYOI, MONEYFORWARD, FREEE)}
FREEE_MARK, FREEE_ROW = "[表題行]", "[明細行]"

_ERAS = {"R": 2018, "H": 1988, "S": 1925, "令和": 2018, "平成": 1988, "昭和": 1925}  # era year 1 = base + 1
_WESTERN = re.compile(r"^(\d{4})[/\-.](\d{1,2})[/\-.](\d{1,2})$|^(\d{4})(\d{2})(\d{2})$")
_ERA_LATIN = re.compile(r"^([RHS])\.?(\d{1,2})[/\-.](\d{1,2})[/\-.](\d{1,2})$")
_ERA_KANJI = re.compile(r"^(令和|平成|昭和)(\d{1,2}|元)年(\d{1,2})月(\d{1,2})日$")
_KANJI = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$")
_AMOUNT = re.compile(r"^[-▲△]?\d{1,3}(,\d{3})*$|^[-▲△]?\d+$")


def parse_date(text: str) -> date:
    """The date forms the three vendors document: 2019/07/01, 2019/7/1, 20190701, 2019-07-01, 2019年7月1日,
    R01/07/01, R.01/7/1, H30/7/1 and 平成27年4月1日 (元年 for the first year of an era)."""
    t = text.strip()
    try:
        if m := _WESTERN.match(t):
            y, mo, d = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
            return date(int(y), int(mo), int(d))
        if m := _KANJI.match(t):
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if m := _ERA_LATIN.match(t) or _ERA_KANJI.match(t):
            era_year = 1 if m.group(2) == "元" else int(m.group(2))
            return date(_ERAS[m.group(1)] + era_year, int(m.group(3)), int(m.group(4)))
    except ValueError:
        pass
    raise ValueError(f"'{text}' is not a date (write it as 2024/04/01, 20240401, R06/04/01 or 令和6年4月1日)")


def _amount(text: str) -> int:
    t = text.strip().replace("，", ",")
    if not t:
        return 0
    if not _AMOUNT.match(t):
        raise ValueError(f"'{text}' is not a whole number of yen")
    n = int(t.lstrip("-▲△").replace(",", ""))
    if abs(n) > YEN:
        raise ValueError("the amount is out of range")
    return -n if t[0] in "-▲△" else n


def fiscal_year_of(day: date, start_month: int = 4) -> int:
    """The fiscal year a day falls in, named by the calendar year it starts in (April–March: FY2024 = Apr 2024–)."""
    return day.year if day.month >= start_month else day.year - 1


def fiscal_year_end(fy: int, start_month: int = 4) -> date:
    """The last day of fiscal year `fy`."""
    return date(fy + 1, start_month, 1) - timedelta(days=1)


def detect(data: bytes) -> str:
    """Which layout a file is in, from its first row: freee's [表題行], MF's 取引No … 借方金額(円) header, 弥生's
    25 columns (header 識別フラグ, or a first cell that is one of its flags); otherwise the portal's own layout."""
    text = decode(data[:64 * 1024]) or ""
    first = next((r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)), [])
    cells = [c.strip().lstrip("\ufeff") for c in first]
    if not cells:
        return "portal"
    if cells[0] == FREEE_MARK:
        return "freee"
    if "取引No" in cells and "借方金額(円)" in cells:
        return "moneyforward"
    if len(cells) == len(YAYOI_COLUMNS) and (cells[0] == "識別フラグ" or cells[0] in YAYOI_FLAGS):
        return "yayoi"
    return "portal"


def parse(data: bytes, layout_key: str, today: date, start_month: int = 4) -> tuple[list[dict], list[dict]]:
    """(periods, errors) from a journal file in one of LAYOUTS: per fiscal year the sum of its lines as
    {"fiscal_year", "sales", "operating_profit", "ordinary_profit", "net_income", "depreciation"}; every problem as
    {"row", "column", "problem"} with `row` the file's line (0: the file as a whole)."""
    layout = LAYOUTS[layout_key]
    errors: list[dict] = []

    def err(row: int, column: str | None, problem: str) -> None:
        errors.append({"row": row, "column": column, "problem": problem})

    if len(data) > MAX_BYTES:
        err(0, None, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB; export one fiscal year at a time")
        return [], errors
    text = decode(data)
    if text is None:
        err(0, None, "the file is neither UTF-8 nor Shift_JIS text")
        return [], errors
    reader = csv.reader(io.StringIO(text))
    records: list[tuple[int, list[str]]] = []
    for raw in reader:
        if any(c.strip() for c in raw) and not (layout is YAYOI and raw and raw[0].startswith("#")):
            records.append((reader.line_num, [c.strip().lstrip("\ufeff") if i == 0 else c.strip()
                                              for i, c in enumerate(raw)]))
    if not records:
        err(1, None, "the file is empty: one journal line per row is expected")
        return [], errors

    # where each column is
    if layout.columns:
        index = {name: i for i, name in enumerate(layout.columns)}
        body = records[1:] if records[0][1][0] == "識別フラグ" else records
        width = len(layout.columns)
    else:
        line, header = records[0]
        index = {}
        for i, h in enumerate(header):
            index.setdefault(h, i)
        if layout is FREEE and header[0] != FREEE_MARK:
            err(line, header[0] or None, f"a freee形式 file starts its header with {FREEE_MARK}")
        needed = (layout.date, layout.debit_account, layout.debit_amount, layout.credit_account, layout.credit_amount)
        for name in needed:
            if name not in index:
                err(line, name, f"the column {name} is missing ({layout.label})")
        if errors:
            return [], errors
        body, width = records[1:], len(header)
    if not body:
        err(records[0][0] + 1, None, "no journal lines after the header")
        return [], errors

    totals: dict[int, dict[str, int]] = {}
    first_line: dict[int, int] = {}
    last_date: date | None = None
    last_voucher: str | None = None
    for line, cells in body:
        if len(errors) >= MAX_ERRORS:
            err(0, None, f"more than {MAX_ERRORS} problems; the first {MAX_ERRORS} are listed")
            break
        if layout.columns and len(cells) != width:
            err(line, None, f"{len(cells)} values where {layout.label} has {width} columns")
            continue
        if not layout.columns and len(cells) > width:
            err(line, None, f"{len(cells)} values for {width} columns")
            continue

        def cell(name: str) -> str:
            i = index.get(name)
            return cells[i] if i is not None and i < len(cells) else ""

        if layout is YAYOI and cell("識別フラグ") not in YAYOI_FLAGS:
            err(line, "識別フラグ", f"'{cell('識別フラグ')}' is not a 識別フラグ of the 弥生 layout "
                                     f"({', '.join(sorted(YAYOI_FLAGS))})")
            continue
        if layout is FREEE and cells[0] != FREEE_ROW:
            err(line, FREEE_MARK, f"each journal row of a freee形式 file starts with {FREEE_ROW}")
            continue
        # a slip's later lines may leave the date empty: they belong to the slip's date
        voucher = cell(layout.voucher)
        continues = (layout is YAYOI and cell("識別フラグ") in ("2100", "2101")) or (
            not layout.columns and voucher and voucher == last_voucher)
        raw_date = cell(layout.date)
        if not raw_date and continues and last_date is not None:
            day = last_date
        else:
            try:
                day = parse_date(raw_date) if raw_date else None
            except ValueError as e:
                err(line, layout.date, str(e))
                continue
            if day is None:
                err(line, layout.date, "the date is missing")
                continue
        last_date, last_voucher = day, voucher
        fy = fiscal_year_of(day, start_month)

        sides = []
        bad = False
        for account_col, amount_col, tax_col in ((layout.debit_account, layout.debit_amount, layout.debit_tax),
                                                 (layout.credit_account, layout.credit_amount, layout.credit_tax)):
            account = cell(account_col)
            parsed = {}
            for col in (amount_col, tax_col):
                try:
                    parsed[col] = _amount(cell(col))
                except ValueError as e:
                    err(line, col, str(e))
                    bad = True
            if len(parsed) < 2:
                continue
            amount, tax = parsed[amount_col], parsed[tax_col]
            if not account:
                if amount:
                    err(line, account_col, f"an amount of {amount:,} yen without an account")
                    bad = True
                continue
            group = ACCOUNTS.get(account)
            if group is None:
                err(line, account_col, f"the account 「{account}」 is not in the portal's table of accounts "
                                       "(docs/financials-csv.md), so its place in the profit and loss statement is "
                                       "unknown; rename it to the table's name or use the portal's own layout")
                bad = True
                continue
            sides.append((account, group, amount - tax, account_col is layout.debit_account))
        if bad:
            continue
        year = totals.setdefault(fy, {})
        first_line.setdefault(fy, line)
        for account, group, net, is_debit in sides:
            if group == "bs":
                continue
            signed = net if (is_debit ^ (group in _CREDIT_NATURE)) else -net
            year[group] = year.get(group, 0) + signed
            if account == DEPRECIATION:
                year["depreciation"] = year.get("depreciation", 0) + signed

    for fy in sorted(totals):
        if not 1900 <= fy <= 2100:
            err(first_line[fy], layout.date, f"FY{fy} is not a fiscal year")
        elif fiscal_year_end(fy, start_month) >= today:
            err(first_line[fy], layout.date, f"FY{fy} has not ended (it ends {fiscal_year_end(fy, start_month)}): "
                                             "its journal is not complete; export the closed fiscal years only")
    if len(totals) > MAX_YEARS:
        years = sorted(totals)
        err(first_line[years[0]], layout.date, f"the file spans {len(years)} fiscal years (FY{years[0]}–FY{years[-1]}); "
                                               f"at most {MAX_YEARS} (the three periods) per import")
    if errors:
        return [], errors
    return [_figures(fy, totals[fy]) for fy in sorted(totals, reverse=True)], []


def _figures(fy: int, t: dict[str, int]) -> dict:
    """The profit-and-loss steps of the 損益計算書 from the groups' sums."""
    sales = t.get("sales", 0)
    operating = sales - t.get("cogs", 0) - t.get("sga", 0)
    ordinary = operating + t.get("non_operating_income", 0) - t.get("non_operating_expense", 0)
    net = ordinary + t.get("extraordinary_gain", 0) - t.get("extraordinary_loss", 0) - t.get("income_taxes", 0)
    return {"fiscal_year": fy, "sales": sales, "operating_profit": operating, "ordinary_profit": ordinary,
            "net_income": net, "depreciation": t.get("depreciation", 0)}
