"""Pure bookkeeping of recommend's batched profile learning (issue 22 item 1, R-OPS-03, R-REC-03, R-NOT-01)."""
from __future__ import annotations

from recommend_service import domain, learning

FIN = [{"fiscal_year": 2023, "sales": 100_000_000, "operating_profit": 5_000_000},
       {"fiscal_year": 2024, "sales": 120_000_000, "operating_profit": 9_000_000}]


def cands() -> dict[str, list[dict]]:
    cat = domain.load_catalogue()
    segs = {domain.segment(i, s, p) for i in ("製造業", "小売業") for s in ("small", "medium", "large")
            for p in ("大阪府", "東京都")}
    return {s: domain.segment_candidates(cat, s) for s in segs}


def stored(old: dict, f: learning.Folded) -> dict:
    """The profile document after the fold's write."""
    return {**old, **f.set, "notified": [*(old.get("notified") or []), *f.notified]}


def test_R_OPS_03_R_REC_03_folding_a_batch_gives_the_same_state_and_net_moves_as_one_event_at_a_time():
    reg = ({"name": "a", "prefecture": "大阪府", "industry": "製造業", "employees": 12}, "acc-a")
    change = ({"name": "a", "prefecture": "大阪府", "industry": "小売業", "employees": 3, "financials": FIN}, "acc-a")
    rename = ({"name": "b", "prefecture": "東京都", "industry": "小売業", "employees": 3}, None)
    c = cands()
    together = learning.fold({}, [reg, change, rename], c)
    doc, moves = {}, []
    for ev in (reg, change, rename):
        f = learning.fold(doc, [ev], c)
        doc, moves = stored(doc, f), moves + f.moves
    assert stored({}, together) == doc
    assert doc["financials"] == FIN and doc["owner"] == "acc-a"  # kept when a later event carries none
    assert learning.merge(together.moves) == {k: v for k, v in learning.merge(moves).items() if v}
    # net: the business counts once, in its last peer group, with its last figures
    net = learning.merge(together.moves)
    assert net[("peer_groups", "小売業|small")]["n"] == 1 and ("peer_groups", "製造業|small") not in net
    assert len(together.notified) == len(set(together.notified))  # R-NOT-01: each programme pushed once


def test_R_OPS_03_merge_adds_up_a_batch_per_group_and_keeps_a_group_whose_deltas_cancel():
    c = cands()
    a = learning.fold({}, [({"name": "a", "prefecture": "大阪府", "industry": "製造業", "employees": 12,
                             "financials": FIN}, "x")], c)
    moved_away = {"peer_group": "製造業|small", "indicators": a.set["indicators"], "industry_group": "製造業",
                  "bench_values": a.set["bench_values"], "owner": "y", "financials": FIN}
    b = learning.fold(moved_away, [({"name": "b", "prefecture": "大阪府", "industry": "小売業", "employees": 3}, "y")], c)
    merged = learning.merge(a.moves + b.moves)
    assert merged[("peer_groups", "製造業|small")] == {}  # one joined, one left: still written (it records the op)
    assert merged[("peer_groups", "小売業|small")]["n"] == 1
    assert merged[("industry_peers", "製造業")] == {}


def test_R_NOT_01_a_business_without_an_owner_is_pushed_nothing():
    f = learning.fold({}, [({"name": "a", "prefecture": "大阪府", "industry": "製造業", "employees": 12}, None)], cands())
    assert f.pushes == [] and f.notified == []
