"""The local benchmark in full (ローカルベンチマーク, R-REC-06, extends R-REC-03 and R-ANC-04). Pure, no I/O.

Six indicators computed from a period's figures, each scored 1–5 against the quintiles of the peers of the same
industry (read from the industry's quantile sketch, see `diagnosis.py`), a total (max 30) and a rank A–D, and the
trend of every indicator over the last three periods (直近・前期・前々期). A figure that cannot be computed says why
(`reason`), never a guess and never an exception.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from recommend_service import diagnosis


@dataclass(frozen=True)
class Indicator:
    key: str
    name: str  # the name the official tool and the PDF use
    unit: str
    higher_is_better: bool


INDICATORS: tuple[Indicator, ...] = (
    Indicator("sales_growth", "売上高増加率", "%", True),
    Indicator("operating_margin", "営業利益率", "%", True),
    Indicator("labour_productivity", "労働生産性", "千円/人", True),
    Indicator("ebitda_debt_multiple", "EBITDA有利子負債倍率", "倍", False),
    Indicator("working_capital_months", "営業運転資本回転期間", "ヶ月", False),
    Indicator("equity_ratio", "自己資本比率", "%", True),
)
KEYS = tuple(i.key for i in INDICATORS)
BY_KEY = {i.key: i for i in INDICATORS}

# R-REC-06 params: the rank thresholds on the total of the six scores (max 30), as the official local benchmark
# tool grades (A 24 and over, B 18–23, C 12–17, D under 12); a peer group needs MIN_PEERS figures to be scored on.
RANK_A, RANK_B, RANK_C = 24, 18, 12
MIN_PEERS = diagnosis.MIN_PEERS
QUINTILES = (0.2, 0.4, 0.6, 0.8)
TREND_PERIODS = 3


def _num(p: dict | None, field: str) -> float | None:
    v = (p or {}).get(field)
    return None if v is None else float(v)


def _missing(p: dict | None, *fields: str) -> str | None:
    gone = [f for f in fields if (p or {}).get(f) is None]
    return f"missing figure(s): {', '.join(gone)}" if gone else None


def compute(periods: list[dict], fiscal_year: int, employees: int | None) -> dict[str, dict]:
    """R-REC-06: the six indicators of period `fiscal_year`: {key: {"value": float | None, "reason": str | None}}.
    Employees are the period's own count if given, else `employees` (the profile's)."""
    by_year = {p["fiscal_year"]: p for p in periods}
    p, prev = by_year.get(fiscal_year), by_year.get(fiscal_year - 1)
    out: dict[str, dict] = {}

    def put(key: str, value: float | None = None, reason: str | None = None) -> None:
        if value is not None and not math.isfinite(value):
            value, reason = None, "the figures give no finite value"
        out[key] = {"value": value, "reason": None if value is not None else (reason or "not computable")}

    if p is None:
        for k in KEYS:
            put(k, reason=f"no figures for FY{fiscal_year}")
        return out
    sales = _num(p, "sales")
    op = _num(p, "operating_profit")
    # 売上高増加率 = (sales − previous sales) / previous sales
    if prev is None:
        put("sales_growth", reason=f"no figures for the previous fiscal year FY{fiscal_year - 1}")
    elif r := _missing(p, "sales") or (_missing(prev, "sales") and f"missing figure(s): sales of FY{fiscal_year - 1}"):
        put("sales_growth", reason=r)
    elif _num(prev, "sales") <= 0:
        put("sales_growth", reason=f"sales of FY{fiscal_year - 1} are zero or negative: growth has no meaning")
    else:
        put("sales_growth", (sales - _num(prev, "sales")) / _num(prev, "sales"))
    # 営業利益率 = operating profit / sales
    if r := _missing(p, "sales", "operating_profit"):
        put("operating_margin", reason=r)
    elif sales <= 0:
        put("operating_margin", reason="sales are zero or negative: the margin has no meaning")
    else:
        put("operating_margin", op / sales)
    # 労働生産性 = operating profit / employees (yen per person)
    staff = p.get("employees") if p.get("employees") is not None else employees
    if r := _missing(p, "operating_profit"):
        put("labour_productivity", reason=r)
    elif staff is None:
        put("labour_productivity", reason="missing figure(s): employees")
    elif staff <= 0:
        put("labour_productivity", reason="no employees: productivity per person has no meaning")
    else:
        put("labour_productivity", op / staff)
    # EBITDA有利子負債倍率 = (borrowings − cash) / (operating profit + depreciation)
    if r := _missing(p, "borrowings", "cash", "operating_profit", "depreciation"):
        put("ebitda_debt_multiple", reason=r)
    elif op + _num(p, "depreciation") <= 0:
        put("ebitda_debt_multiple", reason="EBITDA is zero or negative: debt cannot be repaid from earnings, "
                                           "the multiple has no meaning")
    else:
        put("ebitda_debt_multiple", (_num(p, "borrowings") - _num(p, "cash")) / (op + _num(p, "depreciation")))
    # 営業運転資本回転期間 = (receivables + inventory − payables) / (sales / 12), in months
    if r := _missing(p, "receivables", "inventory", "payables", "sales"):
        put("working_capital_months", reason=r)
    elif sales <= 0:
        put("working_capital_months", reason="sales are zero or negative: the turnover period has no meaning")
    else:
        put("working_capital_months",
            (_num(p, "receivables") + _num(p, "inventory") - _num(p, "payables")) / (sales / 12))
    # 自己資本比率 = equity / total assets
    if r := _missing(p, "equity", "total_assets"):
        put("equity_ratio", reason=r)
    elif _num(p, "total_assets") <= 0:
        put("equity_ratio", reason="total assets are zero or negative: the ratio has no meaning")
    else:
        put("equity_ratio", _num(p, "equity") / _num(p, "total_assets"))
    return out


def latest_year(periods: list[dict]) -> int | None:
    years = [p["fiscal_year"] for p in periods if p.get("fiscal_year") is not None]
    return max(years) if years else None


def values(periods: list[dict], employees: int | None) -> dict[str, float | None]:
    """The latest period's computable values only (what a business contributes to its industry's sketch)."""
    fy = latest_year(periods)
    if fy is None:
        return {k: None for k in KEYS}
    return {k: v["value"] for k, v in compute(periods, fy, employees).items()}


def trend(periods: list[dict], employees: int | None, n: int = TREND_PERIODS) -> list[dict]:
    """R-REC-06 / R-ANC-04: the indicators of the last `n` fiscal years up to the latest (oldest first); a year
    without figures is listed with every indicator not computable."""
    fy = latest_year(periods)
    if fy is None:
        return []
    return [{"fiscal_year": y, "indicators": compute(periods, y, employees)} for y in range(fy - n + 1, fy + 1)]


# --- scoring against peers --------------------------------------------------------------------------------------
def quantiles(counts: dict[str, int], qs: tuple[float, ...] = QUINTILES) -> tuple[list[float], int]:
    """(the values at quantiles `qs`, how many values) of one indicator's sketch buckets (nearest rank)."""
    items = sorted((diagnosis.bucket_value(b), n) for b, n in counts.items() if n > 0)
    total = sum(n for _, n in items)
    if not total:
        return [], 0
    out = []
    for q in qs:
        rank, seen = max(math.ceil(q * total) - 1, 0), 0
        for v, n in items:
            if rank < seen + n:
                out.append(v)
                break
            seen += n
    return out, total


def peer_cuts(sketch: dict[str, dict[str, int]], mine: dict | None,
              min_peers: int = MIN_PEERS) -> dict[str, dict]:
    """The quintile cuts of each indicator among the industry's peers, the business itself taken out of the
    sketch: {key: {"cuts": [q20, q40, q60, q80] | None, "peers": n}}; no cuts with fewer than `min_peers`."""
    own = diagnosis.sketch_delta(mine, None, KEYS)
    out = {}
    for k in KEYS:
        counts = dict(sketch.get(k) or {})
        for key, n in own.items():
            ind, b = key.split(".", 1)
            if ind == k:
                counts[b] = counts.get(b, 0) + n
        cuts, total = quantiles(counts)
        out[k] = {"cuts": cuts if total >= min_peers else None, "peers": total}
    return out


def score(value: float, cuts: list[float], higher_is_better: bool) -> int:
    """1–5: the quintile of the peers the value falls in; reversed where a lower value is better."""
    if higher_is_better:
        return 1 + sum(value > c for c in cuts)
    return 1 + sum(value < c for c in cuts)


def rank(total: int, a: int = RANK_A, b: int = RANK_B, c: int = RANK_C) -> str:
    return "A" if total >= a else "B" if total >= b else "C" if total >= c else "D"


def benchmark(periods: list[dict], employees: int | None, cuts: dict[str, dict],
              min_peers: int = MIN_PEERS) -> dict:
    """R-REC-06: the latest period's six indicators with their scores, the total and rank, and the trend.
    The rank needs all six scores; otherwise `rank` is None and `rank_reason` says which are missing."""
    fy = latest_year(periods)
    latest = compute(periods, fy, employees) if fy is not None else {
        k: {"value": None, "reason": "no financial figures registered"} for k in KEYS}
    rows = []
    for ind in INDICATORS:
        v = latest[ind.key]
        c = cuts.get(ind.key) or {}
        row = {"key": ind.key, "name": ind.name, "unit": ind.unit, "higher_is_better": ind.higher_is_better,
               "value": v["value"], "score": None, "reason": v["reason"], "peers": c.get("peers", 0),
               "peer_quintiles": c.get("cuts")}
        if v["value"] is not None:
            if c.get("cuts"):
                row["score"] = score(v["value"], c["cuts"], ind.higher_is_better)
            else:
                row["reason"] = f"fewer than {min_peers} peers of the same industry have this figure"
        rows.append(row)
    scored = [r["score"] for r in rows if r["score"] is not None]
    total = sum(scored)
    missing = [r["name"] for r in rows if r["score"] is None]
    return {"fiscal_year": fy, "indicators": rows, "total": total, "max_total": 5 * len(INDICATORS),
            "rank": rank(total) if not missing else None,
            "rank_reason": f"not scored: {', '.join(missing)}" if missing else None,
            "trend": trend(periods, employees)}


def display(key: str, value: float | None) -> str:
    """A value as the report prints it (percentages, thousands of yen per person, multiples, months)."""
    if value is None:
        return "—"
    if BY_KEY[key].unit == "%":
        return f"{value * 100:.1f}%"
    if key == "labour_productivity":
        return f"{value / 1000:,.0f}千円"
    return f"{value:.1f}{BY_KEY[key].unit}"
