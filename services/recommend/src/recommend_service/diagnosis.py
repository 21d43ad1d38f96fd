"""Pure management diagnosis (経営診断, R-REC-03): local benchmark indicators against peers, a forecast,
and what a subsidy would change. No I/O."""
from __future__ import annotations

import re
from statistics import median

MIN_PEERS = 5  # fewer peers than this and no peer figure is shown (R-REC-05: no small groups)


def indicators(periods: list[dict], employees: int) -> dict[str, float | None]:
    """R-REC-03: the local-benchmark indicators computable from the registered figures (latest period):
    sales growth (売上高増加率), operating margin (営業利益率), labour productivity (労働生産性, yen per employee).
    A figure that is missing or would divide by zero is None, never a guess."""
    ps = sorted((p for p in periods if p.get("sales") is not None), key=lambda p: p["fiscal_year"])
    out: dict[str, float | None] = {"sales_growth": None, "operating_margin": None, "labour_productivity": None}
    if not ps:
        return out
    last = ps[-1]
    if len(ps) >= 2 and ps[-2]["sales"] and ps[-2]["fiscal_year"] == last["fiscal_year"] - 1:
        out["sales_growth"] = (last["sales"] - ps[-2]["sales"]) / ps[-2]["sales"]
    if last.get("operating_profit") is not None and last["sales"]:
        out["operating_margin"] = last["operating_profit"] / last["sales"]
    if last.get("operating_profit") is not None and employees > 0:
        out["labour_productivity"] = last["operating_profit"] / employees
    return out


def peer_medians(peers: list[dict[str, float | None]], min_peers: int = MIN_PEERS) -> dict[str, float | None]:
    """R-REC-03: the median of each indicator over peers (same industry and size class); None when fewer
    than `min_peers` peers have the figure, so no single business can be read off it."""
    keys = ("sales_growth", "operating_margin", "labour_productivity")
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [p[k] for p in peers if p.get(k) is not None]
        out[k] = median(vals) if len(vals) >= min_peers else None
    return out


def forecast_sales(periods: list[dict], peer_growth: float | None) -> int | None:
    """R-REC-03: next year's sales = latest sales × (1 + growth), growth being the mean of the business's
    own average yearly growth and its peers' median growth (whichever exist); None without two periods."""
    ps = sorted((p for p in periods if p.get("sales")), key=lambda p: p["fiscal_year"])
    if len(ps) < 2:
        return None
    own = [(b["sales"] - a["sales"]) / a["sales"] for a, b in zip(ps, ps[1:])]
    rates = [sum(own) / len(own)] + ([peer_growth] if peer_growth is not None else [])
    return round(ps[-1]["sales"] * (1 + sum(rates) / len(rates)))


def subsidy_rate(text: str | None) -> float | None:
    """The first fraction of a programme's rate text ("2/3（…）、1/2" -> 2/3); None when none is given."""
    m = re.search(r"(\d+)\s*/\s*(\d+)", text or "")
    return int(m.group(1)) / int(m.group(2)) if m and int(m.group(2)) else None


def simulate_subsidy(investment: int, rate: float | None, cap: int | None) -> dict[str, int]:
    """R-REC-03: subsidy = investment × rate, at most the cap; the business bears the rest."""
    subsidy = int(investment * (rate or 0))
    if cap is not None:
        subsidy = min(subsidy, cap)
    return {"investment": investment, "subsidy": subsidy, "own_burden": investment - subsidy}
