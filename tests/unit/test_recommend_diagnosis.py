"""Unit tests of the management diagnosis (R-REC-03)."""
import pytest

from recommend_service import diagnosis as d

FIN = [{"fiscal_year": 2023, "sales": 100_000_000, "operating_profit": 5_000_000},
       {"fiscal_year": 2024, "sales": 110_000_000, "operating_profit": 6_600_000}]


def test_R_REC_03_local_benchmark_indicators():
    ind = d.indicators(FIN, employees=11)
    assert ind["sales_growth"] == pytest.approx(0.10)
    assert ind["operating_margin"] == pytest.approx(0.06)
    assert ind["labour_productivity"] == pytest.approx(600_000)


def test_R_REC_03_missing_figures_stay_unknown():
    assert d.indicators([], 5) == {"sales_growth": None, "operating_margin": None, "labour_productivity": None}
    gap = [{"fiscal_year": 2021, "sales": 1}, {"fiscal_year": 2024, "sales": 2}]  # not consecutive
    assert d.indicators(gap, 0)["sales_growth"] is None


def test_R_REC_03_peer_medians_need_enough_peers():
    peers = [{"sales_growth": g, "operating_margin": None, "labour_productivity": None} for g in (0.1, 0.2, 0.3, 0.4)]
    assert d.peer_medians(peers)["sales_growth"] is None
    peers.append({"sales_growth": 0.5})
    assert d.peer_medians(peers)["sales_growth"] == pytest.approx(0.3)
    assert d.peer_medians(peers)["operating_margin"] is None


def test_R_REC_03_forecast_blends_own_trend_and_peers():
    assert d.forecast_sales(FIN, None) == 121_000_000
    assert d.forecast_sales(FIN, 0.0) == 115_500_000
    assert d.forecast_sales(FIN[:1], 0.1) is None


def test_R_REC_03_subsidy_simulation_respects_rate_and_cap():
    assert d.subsidy_rate("1/2（経営革新計画の承認等を受けた者は2/3）") == pytest.approx(0.5)
    assert d.subsidy_rate(None) is None
    assert d.simulate_subsidy(10_000_000, 0.5, 30_000_000) == {"investment": 10_000_000, "subsidy": 5_000_000,
                                                               "own_burden": 5_000_000}
    assert d.simulate_subsidy(90_000_000, 0.5, 30_000_000)["subsidy"] == 30_000_000
    assert d.simulate_subsidy(1_000, None, None)["subsidy"] == 0
