"""Pure rules of the ratings service: R-RAT-01..04, R-DSP-12."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.vocab import RATING_AXES
from ratings_service.domain import (
    Params, Radar, blocks_free_dispatch, classify, comment_moderation, day_key,
    evaluations_visible, fiscal_year_ended, may_correct, owed_id, raters_owed, validate_comment,
    validate_evaluation, validate_scores,
)
from servicekit.refusals import Rejected

ALL = {a: 3 for a in RATING_AXES}
TODAY = date(2026, 11, 23)


def scores(v: int) -> dict[str, int]:
    return {a: v for a in RATING_AXES}


def test_R_RAT_01_six_axes_each_integer_1_to_5():
    assert validate_scores(ALL) == ALL
    assert validate_scores(scores(1)) == scores(1) and validate_scores(scores(5)) == scores(5)


@pytest.mark.parametrize("bad", [0, 6, 4.5, "3", True, None, -1])
def test_R_RAT_01_out_of_range_or_non_integer_refused(bad):
    with pytest.raises(Rejected) as e:
        validate_scores({**ALL, "expertise": bad})
    assert [x["field"] for x in e.value.extra["errors"]] == ["scores.expertise"]


def test_R_RAT_01_missing_and_unknown_axes_refused():
    s = dict(ALL)
    del s["manners"]
    s["charm"] = 5
    with pytest.raises(Rejected) as e:
        validate_scores(s)
    assert {x["field"] for x in e.value.extra["errors"]} == {"scores.manners", "scores.charm"}


def test_R_RAT_01_comment_optional_and_pending_moderation():
    assert validate_comment("   ") is None and comment_moderation(None) is None
    assert validate_comment(" good ") == "good" and comment_moderation("good") == "pending"
    with pytest.raises(Rejected):
        validate_comment("x" * 3000)


def test_R_RAT_01_correctable_only_within_period():
    given = datetime(2026, 11, 1, tzinfo=UTC)
    p = Params(correction_days=7)
    assert may_correct(given, given + timedelta(days=6, hours=23), p)
    assert not may_correct(given, given + timedelta(days=7, seconds=1), p)


def test_R_RAT_01_business_rates_and_route_A_institution_too():
    assert raters_owed("B", "acc-b", "acc-i") == [("business", "acc-b")]
    assert raters_owed("A", "acc-b", "acc-i") == [("business", "acc-b"), ("institution", "acc-i")]
    assert raters_owed("A", "acc-b", None) == [("business", "acc-b")]
    assert owed_id("d1", "business") == owed_id("d1", "business") != owed_id("d1", "institution")


def test_R_DSP_12_owed_business_rating_blocks_next_free_dispatch():
    assert blocks_free_dispatch([{"status": "owed", "rater_kind": "business"}])
    assert not blocks_free_dispatch([{"status": "given", "rater_kind": "business"}])
    assert not blocks_free_dispatch([{"status": "owed", "rater_kind": "institution"}])


def test_R_RAT_02_rating_five_months_ago_no_longer_counts_yesterday_does():
    r = Radar()
    r.add(day_key(TODAY - timedelta(days=150)), scores(1))
    r.add(day_key(TODAY - timedelta(days=1)), scores(5))
    avg, n = r.summary(TODAY)
    assert n == 1 and avg == {a: 5.0 for a in RATING_AXES}
    # Without the window the old 1 would have pulled the average to 3.
    avg_all, n_all = r.summary(TODAY, Params(window_days=10_000))
    assert n_all == 2 and avg_all["expertise"] == 3.0


def test_R_RAT_02_window_edge_and_expiry_drops_buckets():
    p = Params(window_days=120)
    r = Radar()
    r.add(day_key(TODAY - timedelta(days=119)), scores(2))  # last day inside
    r.add(day_key(TODAY - timedelta(days=120)), scores(4))  # first day outside
    assert r.summary(TODAY, p)[1] == 1
    assert r.expire(TODAY, p) == [day_key(TODAY - timedelta(days=120))]
    assert r.expire(TODAY, p) == []
    assert r.summary(TODAY, p) == ({a: 2.0 for a in RATING_AXES}, 1)


def test_R_RAT_02_per_axis_average_and_correction_keeps_count():
    r = Radar()
    d = day_key(TODAY)
    r.add(d, {**scores(4), "analysis": 2})
    r.add(d, scores(5))
    avg, n = r.summary(TODAY)
    assert n == 2 and avg["analysis"] == 3.5 and avg["expertise"] == 4.5
    r.correct(d, scores(5), scores(1))
    avg, n = r.summary(TODAY)
    assert n == 2 and avg["expertise"] == 2.5 and avg["analysis"] == 1.5


def test_R_RAT_02_stored_radar_round_trips_and_older_documents_still_read():
    r = Radar()
    r.add(day_key(TODAY), {**scores(4), "analysis": 2})
    r.add(day_key(TODAY - timedelta(days=3)), scores(5))
    r.correct(day_key(TODAY), scores(4), scores(3))
    packed = r.pack()
    assert isinstance(packed, str) and packed.startswith(day_key(TODAY - timedelta(days=3)))
    assert Radar.unpack(packed) == r and Radar.unpack(packed).summary(TODAY) == r.summary(TODAY)
    assert Radar.unpack("") == Radar() == Radar.unpack(None)
    older = {day_key(TODAY): {"n": 2, "sums": {a: 7 for a in RATING_AXES}}}  # the form stored before packing
    assert Radar.unpack(older).summary(TODAY) == ({a: 3.5 for a in RATING_AXES}, 2)


def test_R_RAT_02_empty_radar():
    assert Radar().summary(TODAY) == ({}, 0)


def items(i, s, k, e):
    return {"issue_handling": i, "strategy_building": s, "knowledge": k, "execution_capability": e}


def test_R_RAT_04_four_items_validated():
    assert validate_evaluation(items(1, 2, 3, 4)) == items(1, 2, 3, 4)
    with pytest.raises(Rejected):
        validate_evaluation({"issue_handling": 3})


@pytest.mark.parametrize("evs,expected", [
    ([items(5, 5, 5, 5)], ("I", "L4")),
    ([items(5, 4, 3, 3)], ("II", "L3")),
    ([items(2, 3, 4, 5)], ("III", "L3")),
    ([items(2, 2, 3, 3)], ("IV", "L2")),
    ([items(1, 1, 1, 2)], ("IV", "L1")),
    ([items(5, 5, 5, 5), items(1, 1, 1, 1)], ("IV", "L2")),  # averages over the year, not the last one
])
def test_R_RAT_04_year_end_type_and_level(evs, expected):
    assert classify(evs) == expected


def test_R_RAT_04_private_until_fiscal_year_end():
    assert not fiscal_year_ended(2026, date(2027, 3, 31))
    assert fiscal_year_ended(2026, date(2027, 4, 1))
    assert not evaluations_visible(2026, date(2026, 12, 1), frozenset({"institution"}))
    assert evaluations_visible(2026, date(2026, 12, 1), frozenset({"agency"}))
    assert evaluations_visible(2025, date(2026, 12, 1), frozenset({"business"}))


def test_R_RAT_02_radar_svg_draws_the_averages_and_escapes_ids():
    import xml.etree.ElementTree as ET

    from ratings_service.radar_svg import render

    svg = render("exp-<1>", {a: 5.0 for a in RATING_AXES}, 3, 120)
    root = ET.fromstring(svg)  # well-formed, the id escaped
    ns = {"s": "http://www.w3.org/2000/svg"}
    shape = [p for p in root.findall("s:polygon", ns) if p.get("class") == "radar"]
    rings = [p for p in root.findall("s:polygon", ns) if p.get("class") != "radar"]
    assert len(shape) == 1 and shape[0].get("points") == rings[-1].get("points")  # all 5s: the outer ring
    assert "exp-<1>" in root.find("s:title", ns).text
    empty = ET.fromstring(render("e", {}, 0, 120))
    assert not [p for p in empty.findall("s:polygon", ns) if p.get("class") == "radar"]
