"""Pure management diagnosis (経営診断, R-REC-03): local benchmark indicators against peers, a forecast,
and what a subsidy would change. No I/O."""
from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from itertools import accumulate
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


# --- peers kept as a per-group sketch (R-REC-03 at R-OPS-03's scale) -------------------------------------
# A diagnosis must not read every peer's figures: each peer group (industry × size class) keeps, per
# indicator, counts of values in logarithmic buckets (a DDSketch-style quantile sketch). A bucket spans
# ±SKETCH_ACCURACY relative error, so a median read from it is within 1% of the exact one; counts only
# ever change by ±1 when a business joins, leaves or changes its figures, so the sketch is kept by events
# with `$inc` and never rebuilt. Stored as {indicator: {bucket: count}}.
SKETCH_ACCURACY = 0.01
_GAMMA = (1 + SKETCH_ACCURACY) / (1 - SKETCH_ACCURACY)
_TINY = 1e-9
INDICATORS = ("sales_growth", "operating_margin", "labour_productivity")


def bucket(x: float) -> str:
    """The bucket of a value: 'z' for (almost) zero, 'p<i>' / 'n<i>' for ±γ^(i-1) < |x| ≤ γ^i."""
    if abs(x) < _TINY:
        return "z"
    return f"{'p' if x > 0 else 'n'}{math.ceil(math.log(abs(x), _GAMMA))}"


def bucket_value(b: str) -> float:
    """The value a bucket stands for (the point of least relative error inside it)."""
    if b == "z":
        return 0.0
    i = int(b[1:])
    v = 2 * _GAMMA ** i / (_GAMMA + 1)
    return v if b[0] == "p" else -v


def sketch_delta(old: dict | None, new: dict | None, keys: tuple[str, ...] = INDICATORS) -> dict[str, int]:
    """The `$inc` that moves one business's indicators from `old` to `new` (either None: it joins / leaves):
    {"<indicator>.<bucket>": ±1}; an unchanged figure cancels out."""
    inc: dict[str, int] = {}
    for sign, ind in ((-1, old), (1, new)):
        for k in keys:
            v = (ind or {}).get(k)
            if v is not None:
                key = f"{k}.{bucket(v)}"
                inc[key] = inc.get(key, 0) + sign
    return {k: n for k, n in inc.items() if n}


def rank_sketch(sketch: dict[str, dict[str, int]]) -> dict[str, tuple[list[float], list[int]]]:
    """Each indicator's buckets in value order with their running counts (the rank at which each bucket ends). A
    replica computes this once per cached peer group, so a request's medians are a few bisections, not a sort of
    the group's ~1,000 buckets per indicator (~2.4 ms)."""
    out = {}
    for k in INDICATORS:
        items = sorted((bucket_value(b), n) for b, n in (sketch.get(k) or {}).items() if n > 0)
        out[k] = ([v for v, _ in items], list(accumulate(n for _, n in items)))
    return out


def peer_medians_ranked(ranked: dict[str, tuple[list[float], list[int]]], mine: dict | None,
                        min_peers: int = MIN_PEERS) -> dict[str, float | None]:
    """R-REC-03 from the group's ranked sketch (`rank_sketch`): the median of each indicator with the business's own
    figure taken out first (it is not its own peer: one value less in its bucket); None when fewer than `min_peers`
    peers have the figure (R-REC-05). The two middle values are averaged for an even count."""
    out: dict[str, float | None] = {}
    for k in INDICATORS:
        values, ends = ranked.get(k) or ([], [])
        total, own_from = (ends[-1] if ends else 0), None
        if (v := (mine or {}).get(k)) is not None:
            i = bisect_left(values, own := bucket_value(bucket(v)))
            if i < len(values) and values[i] == own:
                own_from, total = (ends[i - 1] if i else 0), total - 1  # ranks from here on move up by one
        if total < max(min_peers, 1):
            out[k] = None
            continue
        picks = [values[bisect_right(ends, r if own_from is None or r < own_from else r + 1)]
                 for r in sorted({(total - 1) // 2, total // 2})]
        out[k] = sum(picks) / len(picks)
    return out


def peer_medians_from_sketch(sketch: dict[str, dict[str, int]], mine: dict | None,
                             min_peers: int = MIN_PEERS) -> dict[str, float | None]:
    """`peer_medians_ranked` of a sketch not ranked yet."""
    return peer_medians_ranked(rank_sketch(sketch), mine, min_peers)
