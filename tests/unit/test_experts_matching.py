"""Explainable, fair expert suggestions (R-EX-07) and the holds that keep experts out of them (R-EX-06)."""
from collections import Counter
from datetime import date

from experts_service import domain
from experts_service import matching as m
from experts_service.search import ExpertIndex, match_view
from servicekit.refusals import Rejected

TODAY = date(2026, 6, 1)
RADAR = {"averages": {"communication": 4.5, "clarity": 4.0, "expertise": 4.8, "analysis": 3.5, "execution": 4.2,
                      "manners": 4.0}, "count": 12}


def cand(i, fields=("sales_channels",), regions=("熊本県",), record=0, radar=None, **kw):
    return {"expert_id": i, "name": f"専門家 {i}", "fields": list(fields), "regions": list(regions), "record": record,
            "radar": radar, "open": 0, "open_cap": None, "paused": False, "recent": [], "windows": [], **kw}


NEED = m.Need(fields=("sales_channels", "it_dx"), region="熊本県", remote_ok=True, needs=("expertise", "analysis"))


def test_R_EX_07_each_suggestion_says_why_fields_region_record_rating_strengths_availability():
    c = cand("a", fields=("sales_channels", "it_dx", "finance"), regions=("熊本県", "福岡県"), record=7, radar=RADAR,
             open=1, open_cap=3)
    [s], left_out = m.suggest([c], NEED, today=TODAY, seed="s")
    r = s.reasons
    assert left_out == {} and s.qualified
    assert r["fields"]["matched"] == ["sales_channels", "it_dx"] and r["fields"]["missing"] == []
    assert r["region"]["match"] == "same_prefecture" and r["region"]["block"] == "九州"
    assert r["record"] == {"completed_dispatches": 7}
    assert r["rating"] == {"average": round(sum(RADAR["averages"].values()) / 6, 2), "count": 12, "counted": True}
    assert r["strengths"] == [{"axis": "expertise", "average": 4.8}]  # only the axes asked for; analysis is 3.5
    assert r["availability"]["capacity_left"] == 2 and r["availability"]["on_hold"] is False
    assert r["fairness"] == {"recent_dispatches": 0, "recent_first_places": 0, "penalty": 0.0}
    text = " / ".join(s.summary)
    assert "Covers 2 of 2 fields" in text and "Works in 熊本県" in text and "7 completed dispatches" in text
    assert "Strong in expertise (4.8)" in text and "Can take 2 more open dispatches" in text


def test_R_EX_07_region_is_same_prefecture_then_same_block_then_remote_then_none():
    need = m.Need(fields=("sales_channels",), region="熊本県", remote_ok=True)
    same = cand("same")
    block = cand("block", regions=("鹿児島県",))
    remote = cand("remote", regions=("北海道",), remote_ok=True)
    far = cand("far", regions=("北海道",))
    out, _ = m.suggest([far, remote, block, same], need, today=TODAY, seed="s")
    assert [s.expert_id for s in out] == ["same", "block", "remote", "far"]
    assert [s.reasons["region"]["match"] for s in out] == ["same_prefecture", "same_block", "remote", "none"]
    assert [s.qualified for s in out] == [True, True, True, False]
    # remote work counts only when the business accepts it
    out, _ = m.suggest([remote], m.Need(fields=("sales_channels",), region="熊本県"), today=TODAY, seed="s")
    assert out[0].reasons["region"]["match"] == "none" and not out[0].qualified


def test_R_EX_06_experts_at_cap_paused_unavailable_or_without_a_common_field_are_never_suggested():
    need = m.Need(fields=("sales_channels",), region="熊本県", on=date(2026, 6, 10))
    pool = [cand("ok", open=2, open_cap=3), cand("cap", open=3, open_cap=3), cand("paused", paused=True),
            cand("away", windows=[(date(2026, 6, 5), date(2026, 6, 20))]), cand("other", fields=("tax",))]
    out, left_out = m.suggest(pool, need, today=TODAY, seed="s")
    assert [s.expert_id for s in out] == ["ok"]
    assert left_out == {"at_cap": 1, "paused": 1, "unavailable": 1, "no_field": 1}
    assert out[0].reasons["availability"]["available_on"] == "2026-06-10"


def test_R_EX_07_fairness_rotates_the_first_place_among_equals():
    pool = [cand(f"e{i}", record=5, radar=RADAR) for i in range(6)]
    need = m.Need(fields=("sales_channels",), region="熊本県")
    # a deterministic tie-break: the same seed gives the same order; other seeds put other equals first
    first = {m.suggest(pool, need, today=TODAY, seed=f"caller-{k}")[0][0].expert_id for k in range(40)}
    assert m.suggest(pool, need, today=TODAY, seed="x")[0][0].expert_id == \
        m.suggest(pool, need, today=TODAY, seed="x")[0][0].expert_id
    assert len(first) >= 5
    # without fairness (the baseline) the same expert is first for every caller
    assert {m.suggest(pool, need, today=TODAY, seed=f"caller-{k}", p=m.BASELINE)[0][0].expert_id
            for k in range(40)} == {"e0"}
    # and whoever was dispatched recently steps back among equals, even for one and the same caller
    def thirty_dispatches(p):
        for c in pool:
            c["recent"] = []
        tops = Counter()
        for _ in range(30):
            top = m.suggest(pool, need, today=TODAY, seed="one-caller", p=p)[0][0]
            tops[top.expert_id] += 1
            next(c for c in pool if c["expert_id"] == top.expert_id)["recent"].append(TODAY.isoformat())
        return tops
    fair = thirty_dispatches(m.DEFAULT)
    assert len(fair) == 6 and max(fair.values()) <= 10
    assert thirty_dispatches(m.BASELINE) == {"e0": 30}


def test_R_EX_07_recent_load_older_than_the_window_no_longer_counts():
    c = cand("a", recent=["2026-01-01", "2026-05-20"], first_places=["2026-05-01", "2026-05-30"])
    recent, firsts, load = m.recent_load(c, TODAY, m.DEFAULT)
    assert (recent, firsts) == (1, 1) and load == 1 + m.DEFAULT.exposure_weight
    assert 0 < m.fairness_penalty(load, m.DEFAULT) < m.DEFAULT.fairness_max_penalty
    assert m.fairness_penalty(10_000, m.DEFAULT) <= m.DEFAULT.fairness_max_penalty


def test_R_EX_07_fairness_never_puts_an_unqualified_expert_above_a_qualified_one():
    need = m.Need(fields=("sales_channels", "it_dx"), region="熊本県")
    busy_qualified = cand("busy", fields=("sales_channels", "it_dx"), regions=("北海道", "福岡県"),
                          recent=[TODAY.isoformat()] * 50, first_places=[TODAY.isoformat()] * 50)
    idle_partial = cand("idle", fields=("sales_channels",), record=40, radar={**RADAR, "averages": {
        a: 5.0 for a in RADAR["averages"]}})  # covers one field of two: better record, ratings and region
    for k in range(30):
        out, _ = m.suggest([idle_partial, busy_qualified], need, today=TODAY, seed=f"s{k}")
        assert [s.expert_id for s in out] == ["busy", "idle"]
        assert out[0].penalty > 0 and out[0].qualified and not out[1].qualified


def test_R_EX_07_fairness_reorders_only_within_its_margin_a_clearly_better_expert_stays_first():
    need = m.Need(fields=("sales_channels",), region="熊本県")
    strong = cand("strong", record=20, radar=RADAR, recent=[TODAY.isoformat()] * 50)
    newcomer = cand("new")
    gap = m.assess(strong, need, TODAY).quality - m.assess(newcomer, need, TODAY).quality
    assert gap > m.DEFAULT.fairness_max_penalty + m.DEFAULT.score_step
    for k in range(30):
        assert m.suggest([newcomer, strong], need, today=TODAY, seed=f"s{k}")[0][0].expert_id == "strong"


def test_R_EX_07_dispatches_seen_open_are_noted_once_as_recent_load():
    e, _ = domain.new_expert("ex-1", "acc-1", "山田", {"fields": ["finance"]})
    e, _ = domain.track_dispatch(e, "dsp-1", "accepted", "2026-05-01T00:00:00+00:00")
    e, _ = domain.track_dispatch(e, "dsp-1", "approved", "2026-05-02T00:00:00+00:00")  # the same dispatch moving on
    e, _ = domain.track_dispatch(e, "dsp-1", "reported", "2026-05-09T00:00:00+00:00")
    e, _ = domain.track_dispatch(e, "dsp-2", "accepted", "2026-05-10T00:00:00+00:00")
    assert [r["id"] for r in e["capacity"]["recent"]] == ["dsp-1", "dsp-2"]
    view = match_view({"_id": "ex-1", **e})
    assert view["recent"] == ["2026-05-01T00:00:00+00:00", "2026-05-10T00:00:00+00:00"] and view["open"] == 1


def test_R_EX_07_index_candidates_are_registered_this_year_not_on_hold_and_share_a_field():
    ix = ExpertIndex()

    def doc(i, fields, status="registered", fy=2026, cap=None, windows=()):
        return {"_id": i, "name": i, "status": status, "registered_fiscal_year": fy, "capacity": cap,
                "profile": {"fields": fields, "regions": ["熊本県"], "qualifications": [], "introduction": ""},
                "availability": {"windows": [{"start": s, "end": t} for s, t in windows], "note": ""},
                "recommendations": [], "record": {"dispatches": 3}}
    ix.upsert(doc("a", ["it_dx"]))
    ix.upsert(doc("b", ["sales_channels", "hr"]))
    ix.upsert(doc("c", ["it_dx"], status="portal", fy=None))
    ix.upsert(doc("d", ["it_dx"], fy=2025))
    ix.upsert(doc("e", ["it_dx"], cap={"open_cap": 1, "open_ids": ["x"]}))
    ix.upsert(doc("f", ["it_dx"], windows=[("2026-06-01", "2026-06-30")]))
    ix.upsert(doc("g", ["tax"]))
    got = ix.candidates(fields=["it_dx", "sales_channels"], today=TODAY)
    assert sorted(c["expert_id"] for c in got) == ["a", "b"]
    assert got[0]["record"] == 3


def test_R_EX_06_calendar_weekdays_worked_decide_availability_on_a_day():
    e, _ = domain.new_expert("ex-1", "acc-1", "山田", {"fields": ["it_dx"], "regions": ["熊本県"]})
    e, _ = domain.set_availability(e, [{"start": "2026-06-20", "end": "2026-06-30"}], "", weekdays=[0, 2, 4, 2])
    assert e["availability"]["weekdays"] == [0, 2, 4]
    assert domain.available_on(e, date(2026, 6, 3))        # a Wednesday
    assert not domain.available_on(e, date(2026, 6, 2))    # a Tuesday
    assert not domain.available_on(e, date(2026, 6, 22))   # a Monday, but inside the window
    e2, _ = domain.set_availability(e, [], "", weekdays=list(range(7)))  # every day is the same as none
    assert "weekdays" not in e2["availability"] and domain.available_on(e2, date(2026, 6, 2))
    try:
        domain.set_availability(e, [], "", weekdays=[7])
        raise AssertionError("weekday 7 accepted")
    except Rejected as r:
        assert r.kind == "invalid"
    # the index and the suggestions follow the calendar for the day asked for, not today's weekday otherwise
    ix = ExpertIndex()
    ix.upsert({**e, "_id": "ex-1", "status": "registered", "registered_fiscal_year": 2026})
    assert [c["expert_id"] for c in ix.candidates(fields=["it_dx"], on=date(2026, 6, 3))] == ["ex-1"]
    assert ix.candidates(fields=["it_dx"], on=date(2026, 6, 2)) == []
    assert [c["expert_id"] for c in ix.candidates(fields=["it_dx"], today=date(2026, 6, 2))] == ["ex-1"]
    need = m.Need(fields=("it_dx",), on=date(2026, 6, 2))
    assert m.suggest([cand("x", fields=("it_dx",), weekdays=[0, 2, 4])], need, today=TODAY, seed="s") == \
        ([], {"unavailable": 1})
    [s], _ = m.suggest([cand("x", fields=("it_dx",), weekdays=[0, 2, 4])], m.Need(fields=("it_dx",)), today=TODAY,
                       seed="s")
    assert s.reasons["availability"]["weekdays"] == [0, 2, 4] and "Takes visits on Mon, Wed, Fri" in s.summary
