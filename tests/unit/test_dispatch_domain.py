"""Pure rules of the dispatch service: programmes, fees, screening and lifecycle (R-DSP, R-ANC-01)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from dispatch_service.domain import (Application, ExpertState, History, InvalidTransition, PlannedVisit, VisitTime,
                                     compute_fee, default_programme, estimate_fee, fee_exemption, screen, transition)
from dispatch_service.domain.eligibility import MESSAGES, check_free_cap, check_visit_caps
from dispatch_service.domain.lifecycle import TRANSITIONS, sources
from dispatch_service.domain.programmes import programme_from_doc, programme_to_doc

P = default_programme(2026)
D1, D2 = date(2026, 6, 1), date(2026, 6, 2)
EXPERT = ExpertState(status="registered", registered_fiscal_year=2026)
ISSUE = "Sales fell 30% after a key customer left; we need a new sales channel strategy."


def app(**kw) -> Application:
    base = dict(route="A", business_id="b1", fiscal_year=2026, issue=ISSUE,
                planned=(PlannedVisit(D1, 2.0),), token_rights=frozenset({"request_dispatch"}))
    return Application(**{**base, **kw})


def codes(a=None, e=EXPERT, h=History(), p=P) -> set[str]:
    return {r.code for r in screen(a or app(), e, h, p)}


# --- fees (R-DSP-10, R-DSP-11, R-ANC-01) ------------------------------------------------------------
def test_R_DSP_10_two_hours_59_minutes_count_as_two_and_a_half_hours():
    assert compute_fee([VisitTime(D1, 179)], P).fee == 12_500


def test_R_DSP_10_seven_hours_in_one_day_are_capped_at_30000():
    # Two visits the same day (3 h each counted, 1 h over the per-visit cap dropped): 6 h → 30,000 cap.
    assert compute_fee([VisitTime(D1, 240), VisitTime(D1, 180)], P).fee == 30_000
    lenient = replace(P, max_hours_per_visit=8.0)
    assert compute_fee([VisitTime(D1, 420)], lenient).fee == 30_000


def test_R_DSP_10_units_are_counted_per_day_remainders_dropped_per_day():
    # 29 min on two different days: each day's remainder is dropped → no fee; same day → one unit.
    assert compute_fee([VisitTime(D1, 29), VisitTime(D2, 29)], P).fee == 0
    assert compute_fee([VisitTime(D1, 29), VisitTime(D1, 29)], P).fee == 2_500


def test_R_DSP_10_daily_cap_applies_per_day_not_per_dispatch():
    fee = compute_fee([VisitTime(D1, 180), VisitTime(D1, 180), VisitTime(D2, 180), VisitTime(D2, 180)], P)
    assert fee.fee == 60_000


def test_R_DSP_10_travel_costs_are_added_to_the_budget_amount():
    fee = compute_fee([VisitTime(D1, 120)], P, travel=3_200)
    assert (fee.fee, fee.travel, fee.total) == (10_000, 3_200, 13_200)


def test_R_DSP_10_rates_and_units_come_from_the_programme():
    p = replace(P, fee_per_hour=6_000, unit_minutes=60, daily_fee_cap=40_000)
    assert compute_fee([VisitTime(D1, 179)], p).fee == 12_000


def test_R_DSP_11_web_consultation_pays_no_fee():
    assert compute_fee([VisitTime(D1, 120, mode="web")], P).fee == 0


def test_R_DSP_11_online_dispatch_is_paid_like_a_visit():
    assert compute_fee([VisitTime(D1, 90, mode="online")], P).fee == 7_500


def test_R_DSP_11_no_fee_when_requested_by_the_experts_own_employer():
    ex = fee_exemption(expert_employer_id="inst-1", requesting_institution_id="inst-1", personnel_cost_subsidised=False)
    assert ex == "own_employer"
    fee = compute_fee([VisitTime(D1, 120)], P, travel=1_000, exemption=ex)
    assert (fee.fee, fee.travel) == (0, 1_000)
    assert fee_exemption(expert_employer_id="inst-2", requesting_institution_id="inst-1",
                         personnel_cost_subsidised=False) is None


def test_R_DSP_11_no_fee_for_experts_with_subsidised_personnel_costs():
    ex = fee_exemption(expert_employer_id=None, requesting_institution_id="inst-1", personnel_cost_subsidised=True)
    assert compute_fee([VisitTime(D1, 120)], P, exemption=ex).fee == 0


def test_R_ANC_01_only_verified_visit_time_is_paid():
    fee = compute_fee([VisitTime(D1, 120, verified=True), VisitTime(D2, 120, verified=False)], P)
    assert (fee.fee, fee.paid_minutes) == (10_000, 120)


def test_R_DSP_08_estimate_covers_the_planned_visits():
    planned = [VisitTime(D1, 180, verified=False), VisitTime(D2, 90, verified=False)]
    assert estimate_fee(planned, P, travel=500).total == 15_000 + 7_500 + 500


# --- programmes as data ---------------------------------------------------------------------------
def test_R_DSP_03_programme_round_trips_through_its_stored_form():
    assert programme_from_doc(programme_to_doc(P)) == P


# --- screening -----------------------------------------------------------------------------------
def test_R_DSP_01_route_A_accepted_for_a_member_allowed_to_request():
    assert codes() == set()


def test_R_DSP_01_route_A_refused_without_the_request_dispatch_right():
    assert codes(app(token_rights=frozenset({"recommend_experts"}))) == {"not_dispatch_member"}


def test_R_DSP_01_route_A_membership_from_identity_events_wins_over_the_token():
    assert codes(app(member_role="institution")) == {"not_dispatch_member"}
    assert codes(app(member_left=True)) == {"not_dispatch_member"}
    assert codes(app(member_role="dispatch_member", token_rights=frozenset())) == set()
    assert codes(app(member_role="representative")) == set()


def test_R_DSP_02_route_B_needs_prior_dispatch_held_consultation_and_cosignature():
    b = app(route="B", token_rights=frozenset())
    assert codes(b) == {"no_prior_platform_dispatch", "no_web_consultation", "not_cosigned"}
    assert codes(replace(b, prior_platform_dispatch=True, consultation_held=True)) == {"not_cosigned"}
    assert codes(replace(b, prior_platform_dispatch=True, cosigned=True)) == {"no_web_consultation"}
    assert codes(replace(b, consultation_held=True, cosigned=True)) == {"no_prior_platform_dispatch"}
    assert codes(replace(b, prior_platform_dispatch=True, consultation_held=True, cosigned=True)) == set()


def test_R_DSP_03_fourth_free_dispatch_in_a_fiscal_year_is_refused():
    assert codes(h=History(used_free=2)) == set()
    assert codes(h=History(used_free=3)) == {"free_cap_reached"}


def test_R_DSP_03_business_succession_and_it_issues_allow_five():
    for kind in ("business_succession", "it_dx"):
        assert codes(app(issue_kind=kind), h=History(used_free=4)) == set()
        assert codes(app(issue_kind=kind), h=History(used_free=5)) == {"free_cap_reached"}
    assert codes(app(issue_kind="finance"), h=History(used_free=3)) == {"free_cap_reached"}


def test_R_DSP_03_cap_is_a_programme_parameter():
    p2013 = replace(P, free_dispatches=3, free_dispatches_extended=3)
    assert check_free_cap(app(issue_kind="it_dx"), History(used_free=3), p2013)
    generous = replace(P, free_dispatches=10)
    assert not check_free_cap(app(), History(used_free=9), generous)


def test_R_DSP_04_issue_must_be_clear_beyond_self_help_and_need_specialist_knowledge():
    assert codes(app(issue="help")) == {"issue_unclear"}
    assert codes(app(beyond_self_help=False)) == {"within_self_help"}
    assert codes(app(needs_specialist=False)) == {"no_specialist_need"}


@pytest.mark.parametrize("change,code", [
    (dict(advisory_contract=True), "advisory_contract"),
    (dict(solicited_by_expert=True), "expert_solicited"),
    (dict(dates_fixed_without_desk=True), "dates_fixed_without_desk"),
    (dict(support_kinds=frozenset({"general_lecture"})), "general_lecture_or_training"),
    (dict(support_kinds=frozenset({"staff_training"})), "general_lecture_or_training"),
    (dict(support_kinds=frozenset({"business_work"})), "doing_business_work"),
    (dict(support_kinds=frozenset({"customer_brokering"})), "doing_business_work"),
    (dict(support_kinds=frozenset({"document_production"})), "mere_production"),
    (dict(support_kinds=frozenset({"website", "logo"})), "mere_production"),
    (dict(support_kinds=frozenset({"packaging"})), "mere_production"),
    (dict(support_kinds=frozenset({"flyer"})), "mere_production"),
])
def test_R_DSP_06_each_refusal_ground_is_its_own_named_reason(change, code):
    refusals = screen(app(**change), EXPERT, History(), P)
    assert [r.code for r in refusals] == [code]
    assert refusals[0].rule == "R-DSP-06" and len(refusals[0].message) > 20


def test_R_DSP_06_expert_belonging_or_related_to_the_business_is_refused():
    related = replace(EXPERT, related_business_ids=frozenset({"b1"}))
    assert codes(e=related) == {"expert_belongs_to_business"}
    assert codes(app(business_id="b2"), e=related) == set()


def test_R_DSP_07_visit_and_online_caps_per_application():
    six = tuple(PlannedVisit(date(2026, 6, d), 2.0) for d in range(1, 7))
    assert {r.code for r in check_visit_caps(six, P)} == {"too_many_visits"}
    assert {r.code for r in check_visit_caps(six[:5], P)} == set()
    assert {r.code for r in check_visit_caps((PlannedVisit(D1, 3.5),), P)} == {"visit_too_long"}
    assert {r.code for r in check_visit_caps((PlannedVisit(D1, 3.0),), P)} == set()
    online = tuple(PlannedVisit(date(2026, 6, d), 4.0, "online") for d in range(1, 5))
    assert {r.code for r in check_visit_caps(online, P)} == {"online_hours_exceeded"}  # 16 h > 15 h
    assert {r.code for r in check_visit_caps(online[:3], P)} == set()
    assert {r.code for r in check_visit_caps((), P)} == {"no_visits_planned"}


def test_R_DSP_07_caps_are_programme_parameters():
    three_visits = replace(P, max_visits=3)
    four = tuple(PlannedVisit(date(2026, 6, d), 1.0) for d in range(1, 5))
    assert {r.code for r in check_visit_caps(four, three_visits)} == {"too_many_visits"}


def test_R_DSP_12_pending_rating_blocks_the_next_free_request():
    assert codes(h=History(pending_ratings=1)) == {"rating_pending"}
    assert codes(h=History(pending_ratings=0)) == set()


def test_R_EX_01_expert_must_be_registered_this_year_and_not_suspended():
    assert codes(e=None) == {"expert_unknown"}
    assert codes(e=replace(EXPERT, status="portal")) == {"expert_not_registered"}
    assert codes(e=replace(EXPERT, status="applied")) == {"expert_not_registered"}
    assert codes(e=replace(EXPERT, registered_fiscal_year=2025)) == {"expert_not_registered"}
    assert codes(e=replace(EXPERT, status="suspended")) == {"expert_suspended"}


def test_R_EX_03_expert_must_be_available_on_the_planned_dates():
    away = replace(EXPERT, unavailable=((date(2026, 5, 20), date(2026, 6, 1)),))
    refusals = screen(app(), away, History(), P)
    assert [r.code for r in refusals] == ["expert_unavailable"] and "2026-06-01" in refusals[0].message
    assert codes(app(planned=(PlannedVisit(D2, 2.0),)), e=away) == set()


def test_R_EX_06_a_planned_visit_on_a_weekday_the_expert_does_not_work_is_refused():
    assert D1.weekday() == 0 and D2.weekday() == 1  # Monday, Tuesday
    tuesdays = replace(EXPERT, weekdays=frozenset({1, 3}))
    refusals = screen(app(planned=(PlannedVisit(D1, 2.0), PlannedVisit(D2, 2.0))), tuesdays, History(), P)
    assert [r.code for r in refusals] == ["expert_off_weekday"] and refusals[0].rule == "R-EX-06"
    assert "2026-06-01 is a Monday" in refusals[0].message and "Tuesday, Thursday" in refusals[0].message
    assert "2026-06-02" not in refusals[0].message
    assert codes(app(planned=(PlannedVisit(D2, 2.0),)), e=tuesdays) == set()
    # no calendar (an event from before the field existed, or none set): any day
    assert codes(app(planned=(PlannedVisit(D1, 2.0),)), e=replace(EXPERT, weekdays=frozenset())) == set()


def test_R_EX_06_an_expert_changed_event_without_weekdays_means_any_day():
    from contracts.events.experts import ExpertChanged
    old = {"expert_id": "e1", "account_id": "a1", "change": "approved", "status": "registered", "name": "n"}
    assert ExpertChanged.model_validate(old).weekdays == []
    assert ExpertChanged.model_validate({**old, "weekdays": [0, 4]}).weekdays == [0, 4]
    with pytest.raises(ValueError):
        ExpertChanged.model_validate({**old, "weekdays": [7]})


def test_R_ID_06_revoked_expert_account_is_refused():
    assert codes(e=replace(EXPERT, revoked=True)) == {"account_revoked"}
    assert codes(e=replace(EXPERT, status="exited")) == {"account_revoked"}


def test_R_DSP_06_all_reasons_are_reported_at_once_with_rule_and_message():
    refusals = screen(app(issue="x", advisory_contract=True), EXPERT, History(used_free=3, pending_ratings=1), P)
    assert {r.code for r in refusals} == {"issue_unclear", "advisory_contract", "rating_pending", "free_cap_reached"}
    assert all(r.rule.startswith("R-") and r.message for r in refusals)
    assert all(rule.startswith("R-") and len(msg) > 20 for rule, msg in MESSAGES.values())


# --- lifecycle (R-DSP-14) -----------------------------------------------------------------------------
HAPPY = ["requested", "accepted", "reserved", "approved", "scheduled", "visited", "visited", "reported",
         "confirmed", "paid"]


def test_R_DSP_14_happy_path_is_allowed_step_by_step():
    s = HAPPY[0]
    for nxt in HAPPY[1:]:
        s = transition(s, nxt)
    assert s == "paid"


def test_R_DSP_14_steps_cannot_be_skipped_or_reversed():
    for cur, wanted in [("requested", "approved"), ("accepted", "approved"), ("approved", "visited"),
                        ("scheduled", "reported"), ("visited", "confirmed"), ("reported", "paid"),
                        ("paid", "approved"), ("approved", "reserved")]:
        with pytest.raises(InvalidTransition) as err:
            transition(cur, wanted)
        assert cur in str(err.value) and wanted in str(err.value)


def test_R_DSP_14_cancel_from_any_step_before_confirmation_never_after_payment():
    for s in ["requested", "accepted", "reserved", "approved", "scheduled", "visited", "reported"]:
        assert transition(s, "cancelled") == "cancelled"
    for s in ["paid", "refused", "cancelled", "confirmed"]:
        with pytest.raises(InvalidTransition):
            transition(s, "cancelled")


def test_R_DSP_14_refusal_only_at_screening_or_for_lack_of_budget():
    # budget_unanswered: a late BudgetRefused still refuses (lack of budget)
    assert set(sources("refused")) == {"requested", "accepted", "budget_unanswered"}
    assert TRANSITIONS["paid"] == frozenset()
