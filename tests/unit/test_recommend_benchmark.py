"""Unit tests of the local benchmark in full (R-REC-06): six indicators, scoring direction, rank, trend, edge cases."""
import pytest

from recommend_service import benchmark as b
from recommend_service import diagnosis as d

P2024 = {"fiscal_year": 2024, "sales": 120_000_000, "operating_profit": 6_000_000, "depreciation": 2_000_000,
         "borrowings": 30_000_000, "cash": 10_000_000, "receivables": 15_000_000, "inventory": 8_000_000,
         "payables": 3_000_000, "equity": 40_000_000, "total_assets": 100_000_000}
P2023 = {**P2024, "fiscal_year": 2023, "sales": 100_000_000}
P2022 = {"fiscal_year": 2022, "sales": 80_000_000, "operating_profit": -1_000_000}
FIN = [P2022, P2023, P2024]


def val(periods, key, employees=10, fy=2024):
    return b.compute(periods, fy, employees)[key]


def test_R_REC_06_sales_growth():
    assert val(FIN, "sales_growth")["value"] == pytest.approx(0.2)


def test_R_REC_06_operating_margin():
    assert val(FIN, "operating_margin")["value"] == pytest.approx(0.05)


def test_R_REC_06_labour_productivity_uses_period_employees_before_profile():
    assert val(FIN, "labour_productivity")["value"] == pytest.approx(600_000)
    assert val([{**P2024, "employees": 20}], "labour_productivity")["value"] == pytest.approx(300_000)


def test_R_REC_06_ebitda_debt_multiple():
    # (30M − 10M) / (6M + 2M)
    assert val(FIN, "ebitda_debt_multiple")["value"] == pytest.approx(2.5)


def test_R_REC_06_working_capital_turnover_months():
    # (15M + 8M − 3M) / (120M / 12)
    assert val(FIN, "working_capital_months")["value"] == pytest.approx(2.0)


def test_R_REC_06_equity_ratio():
    assert val(FIN, "equity_ratio")["value"] == pytest.approx(0.4)


def test_R_REC_06_edge_cases_are_not_computable_with_a_reason():
    zero_sales = {**P2024, "sales": 0}
    got = b.compute([P2023, zero_sales], 2024, 10)
    assert got["operating_margin"]["value"] is None and "sales are zero" in got["operating_margin"]["reason"]
    assert got["working_capital_months"]["value"] is None and "sales are zero" in got["working_capital_months"]["reason"]
    prev_zero = b.compute([{**P2023, "sales": 0}, P2024], 2024, 10)["sales_growth"]
    assert prev_zero["value"] is None and "FY2023" in prev_zero["reason"]
    neg = b.compute([{**P2024, "operating_profit": -5_000_000, "depreciation": 1_000_000}], 2024, 10)
    assert neg["ebitda_debt_multiple"]["value"] is None and "EBITDA is zero or negative" in neg["ebitda_debt_multiple"]["reason"]
    bare = b.compute([{"fiscal_year": 2024, "sales": 1_000}], 2024, 0)
    assert "borrowings" in bare["ebitda_debt_multiple"]["reason"] and "cash" in bare["ebitda_debt_multiple"]["reason"]
    assert "equity" in bare["equity_ratio"]["reason"] and "total_assets" in bare["equity_ratio"]["reason"]
    assert "previous fiscal year" in bare["sales_growth"]["reason"]
    assert "operating_profit" in bare["labour_productivity"]["reason"]
    assert "no employees" in b.compute([P2024], 2024, 0)["labour_productivity"]["reason"]
    assert "total assets are zero" in b.compute([{**P2024, "total_assets": 0}], 2024, 1)["equity_ratio"]["reason"]
    assert all(v["value"] is None and v["reason"] for v in b.compute([], 2024, 3).values())
    empty = b.benchmark([], 3, {})
    assert empty["rank"] is None and empty["total"] == 0 and empty["trend"] == []


def _sketch(rows):
    sketch: dict = {}
    for r in rows:
        for key, n in d.sketch_delta(None, r, b.KEYS).items():
            ind, bk = key.split(".", 1)
            sketch.setdefault(ind, {})[bk] = sketch.get(ind, {}).get(bk, 0) + n
    return sketch


def test_R_REC_06_scoring_direction_higher_and_lower_is_better():
    cuts = [1.0, 2.0, 3.0, 4.0]
    assert [b.score(v, cuts, True) for v in (0.5, 1.5, 2.5, 3.5, 4.5)] == [1, 2, 3, 4, 5]
    assert [b.score(v, cuts, False) for v in (0.5, 1.5, 2.5, 3.5, 4.5)] == [5, 4, 3, 2, 1]
    assert not b.BY_KEY["ebitda_debt_multiple"].higher_is_better
    assert not b.BY_KEY["working_capital_months"].higher_is_better
    assert all(b.BY_KEY[k].higher_is_better for k in ("sales_growth", "operating_margin", "labour_productivity",
                                                       "equity_ratio"))


def test_R_REC_06_quintiles_from_the_industry_sketch_and_own_figures_taken_out():
    peers = [{k: float(i) for k in b.KEYS} for i in range(1, 11)]  # 1..10 on every indicator
    mine = {k: 100.0 for k in b.KEYS}
    cuts = b.peer_cuts(_sketch(peers + [mine]), mine)
    for k in b.KEYS:
        assert cuts[k]["peers"] == 10
        assert cuts[k]["cuts"] == pytest.approx([2, 4, 6, 8], rel=0.02)
    few = b.peer_cuts(_sketch(peers[:4]), None)
    assert all(c["cuts"] is None for c in few.values())


def test_R_REC_06_total_and_rank_thresholds():
    assert [b.rank(t) for t in (30, 24, 23, 18, 17, 12, 11, 6)] == ["A", "A", "B", "B", "C", "C", "D", "D"]
    assert b.rank(20, a=20) == "A"


def test_R_REC_06_full_benchmark_scores_all_six_and_ranks():
    mine = b.values(FIN, 10)
    assert all(v is not None for v in mine.values())
    # peers all worse than the business on every indicator (lower values where higher is better, and vice versa)
    worse = [{k: (mine[k] - abs(mine[k]) * (0.5 + i / 10) if b.BY_KEY[k].higher_is_better
                  else mine[k] + abs(mine[k]) * (0.5 + i / 10)) for k in b.KEYS} for i in range(10)]
    out = b.benchmark(FIN, 10, b.peer_cuts(_sketch(worse), None))
    assert [r["score"] for r in out["indicators"]] == [5] * 6
    assert out["total"] == 30 and out["rank"] == "A" and out["rank_reason"] is None
    assert [r["name"] for r in out["indicators"]] == ["売上高増加率", "営業利益率", "労働生産性", "EBITDA有利子負債倍率",
                                                      "営業運転資本回転期間", "自己資本比率"]
    better = [{k: (mine[k] + abs(mine[k]) * (0.5 + i / 10) if b.BY_KEY[k].higher_is_better
                   else mine[k] - abs(mine[k]) * (0.5 + i / 10)) for k in b.KEYS} for i in range(10)]
    low = b.benchmark(FIN, 10, b.peer_cuts(_sketch(better), None))
    assert low["total"] == 6 and low["rank"] == "D"
    # one indicator not computable: scored five, no rank, and the reason names it
    part = b.benchmark([P2023, {**P2024, "equity": None}], 10, b.peer_cuts(_sketch(worse), None))
    assert part["rank"] is None and "自己資本比率" in part["rank_reason"] and part["total"] == 25


def test_R_REC_06_trend_over_three_periods():
    t = b.trend(FIN, 10)
    assert [p["fiscal_year"] for p in t] == [2022, 2023, 2024]
    assert t[0]["indicators"]["sales_growth"]["value"] is None  # no FY2021
    assert t[1]["indicators"]["sales_growth"]["value"] == pytest.approx(0.25)
    assert t[0]["indicators"]["operating_margin"]["value"] == pytest.approx(-0.0125)
    assert t[2]["indicators"]["equity_ratio"]["value"] == pytest.approx(0.4)
    gap = b.trend([P2022, P2024], 10)
    assert "no figures for FY2023" in gap[1]["indicators"]["equity_ratio"]["reason"]


def test_R_REC_06_display_units():
    assert b.display("operating_margin", 0.05) == "5.0%"
    assert b.display("labour_productivity", 600_000) == "600千円"
    assert b.display("ebitda_debt_multiple", 2.5) == "2.5倍"
    assert b.display("working_capital_months", None) == "—"


def test_R_REC_06_R_OPS_03_industry_sketch_moves_by_deltas():
    from recommend_service.learning import sketch_moves as _sketch_moves
    old = {k: None for k in b.KEYS} | {"operating_margin": 0.05}
    new = {k: None for k in b.KEYS} | {"operating_margin": 0.05, "equity_ratio": 0.4}
    same = _sketch_moves("製造業", old, "製造業", new, b.KEYS)
    assert same == {"製造業": {f"sketch.equity_ratio.{d.bucket(0.4)}": 1}}  # unchanged figure and count cancel out
    moved = _sketch_moves("製造業", old, "小売業", new, b.KEYS)
    assert moved["製造業"] == {f"sketch.operating_margin.{d.bucket(0.05)}": -1, "n": -1}
    assert moved["小売業"]["n"] == 1 and len(moved["小売業"]) == 3
    assert _sketch_moves(None, None, "製造業", new, b.KEYS)["製造業"]["n"] == 1
