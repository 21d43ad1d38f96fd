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


def test_R_REC_03_R_OPS_03_sketch_median_within_one_percent_and_kept_by_deltas():
    import random
    from statistics import median
    rnd = random.Random(3)
    values = [{"sales_growth": rnd.uniform(-0.5, 0.8), "operating_margin": rnd.gauss(0.04, 0.05),
               "labour_productivity": rnd.lognormvariate(14, 1)} for _ in range(2001)]
    sketch: dict = {}

    def apply(inc):
        for key, n in inc.items():
            ind, b = key.split(".", 1)
            sketch.setdefault(ind, {})[b] = sketch.get(ind, {}).get(b, 0) + n
    for v in values:
        apply(d.sketch_delta(None, v))
    changed = {**values[0], "sales_growth": 5.0}  # one business changes its figures, one leaves
    apply(d.sketch_delta(values[0], changed))
    apply(d.sketch_delta(values[1], None))
    now = [changed] + values[2:]
    got = d.peer_medians_from_sketch(sketch, None)
    for k in d.INDICATORS:
        exact = median(v[k] for v in now)
        assert got[k] == pytest.approx(exact, rel=0.011, abs=1e-6), k
    # the business itself is not its own peer
    mine = now[5]
    assert d.peer_medians_from_sketch(sketch, mine)["sales_growth"] == pytest.approx(
        median(v["sales_growth"] for v in now if v is not mine), rel=0.011)


def test_R_REC_03_sketch_shows_nothing_for_fewer_than_five_peers():
    sketch: dict = {}
    for g in (0.1, 0.2, 0.3, 0.4, 0.5):
        for key, n in d.sketch_delta(None, {"sales_growth": g}).items():
            ind, b = key.split(".", 1)
            sketch.setdefault(ind, {})[b] = n
    assert d.peer_medians_from_sketch(sketch, None)["sales_growth"] == pytest.approx(0.3, rel=0.01)
    assert d.peer_medians_from_sketch(sketch, {"sales_growth": 0.3})["sales_growth"] is None  # 4 peers besides me
    assert d.peer_medians_from_sketch(sketch, None)["operating_margin"] is None


def test_R_REC_03_R_OPS_03_ranked_sketch_medians_equal_the_median_of_the_bucket_values_without_oneself():
    """The request path's medians (bisections in a sketch ranked once per cached peer group) are exactly the median
    of the peers' bucket values with the business's own value taken out, for odd and even counts, own figures in a
    bucket of the sketch or not."""
    import random
    from statistics import median

    rnd = random.Random(7)
    for case in range(300):
        figures = [rnd.choice([rnd.lognormvariate(0, 2), -rnd.lognormvariate(0, 1), 0.0])
                   for _ in range(rnd.randint(0, 60))]
        sketch: dict = {}
        for f in figures:
            for key, n in d.sketch_delta(None, {"operating_margin": f}).items():
                ind, b = key.split(".", 1)
                sketch.setdefault(ind, {})[b] = sketch.get(ind, {}).get(b, 0) + n
        own = rnd.choice(figures) if figures and rnd.random() < 0.7 else rnd.uniform(-5, 5)
        mine = {"operating_margin": own} if case % 5 else None
        values = [d.bucket_value(d.bucket(f)) for f in figures]
        if mine and d.bucket_value(d.bucket(own)) in values:
            values.remove(d.bucket_value(d.bucket(own)))
        got = d.peer_medians_ranked(d.rank_sketch(sketch), mine)["operating_margin"]
        if len(values) < d.MIN_PEERS:
            assert got is None, case
        else:
            assert got == pytest.approx(median(values), rel=1e-12, abs=1e-12), case
