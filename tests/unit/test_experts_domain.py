"""Experts domain rules (pure): R-EX-01..04, R-PF-04."""
from datetime import date

import pytest

from experts_service import domain as d
from servicekit.refusals import Rejected

AT = "2026-05-01T09:00:00+00:00"
TODAY = date(2026, 5, 1)  # fiscal year 2026
MEMBER = {"kind": "institution", "name": "熊本商工会議所", "memberships": {"pf-kumamoto": "institution"}}
ORGS = {"org-a": MEMBER}
QUALIFIED = [{"route": "public_qualification", "qualification": "中小企業診断士"}]


def portal(**profile):
    e, change = d.new_expert("ex-1", "acc-1", "山田 花子", {"fields": ["finance"], **profile})
    assert change == "registered"
    return e


def recommended(org_id="org-a", org=MEMBER):
    e, _ = d.recommend(portal(), org_id, org, at=AT)
    e, _ = d.consent(e, org_id, at=AT)
    return e


def applied():
    e, change = d.apply_stage2(recommended(), QUALIFIED, True, ORGS, at=AT)
    assert change == "applied"
    return e


def registered():
    e, change = d.review_application(applied(), "approve", [], reviewer="ag-1", at=AT, today=TODAY)
    assert change == "approved"
    return e


# --- R-EX-01: two stages ------------------------------------------------------------------------

def test_R_EX_01_stage1_page_is_not_a_dispatch_expert():
    e = portal()
    assert e["status"] == "portal" and e["registered_fiscal_year"] is None
    assert not d.dispatchable(e, TODAY)


def test_R_EX_01_stage2_only_after_agency_approval():
    e = applied()
    assert e["status"] == "applied" and not d.dispatchable(e, TODAY)
    e = registered()
    assert e["status"] == "registered" and e["registered_fiscal_year"] == 2026 and d.dispatchable(e, TODAY)
    assert e["application"]["reviewed_by"] == "ag-1"


def test_R_EX_01_return_with_reasons_goes_back_to_portal_and_allows_reapplying():
    e, change = d.review_application(applied(), "return", ["証明書が不鮮明"], reviewer="ag", at=AT, today=TODAY)
    assert change == "returned" and e["status"] == "portal"
    assert e["application"]["state"] == "returned" and e["application"]["reasons"] == ["証明書が不鮮明"]
    e, change = d.apply_stage2(e, QUALIFIED, True, ORGS, at=AT)
    assert change == "applied" and len(e["application"]["history"]) == 1


@pytest.mark.parametrize("decision", ["return", "reject"])
def test_R_EX_01_return_or_reject_needs_reasons(decision):
    with pytest.raises(Rejected) as r:
        d.review_application(applied(), decision, ["  "], reviewer="ag", at=AT, today=TODAY)
    assert r.value.kind == "invalid" and "reasons" in r.value.detail


def test_R_EX_01_reject_ends_the_application():
    e, change = d.review_application(applied(), "reject", ["資格要件を満たさない"], reviewer="ag", at=AT, today=TODAY)
    assert change == "rejected" and e["status"] == "portal" and e["application"]["state"] == "rejected"


def test_R_EX_01_review_needs_a_pending_application():
    with pytest.raises(Rejected):
        d.review_application(portal(), "approve", [], reviewer="ag", at=AT, today=TODAY)
    with pytest.raises(Rejected):
        d.review_application(registered(), "approve", [], reviewer="ag", at=AT, today=TODAY)


def test_R_EX_01_cannot_apply_twice():
    with pytest.raises(Rejected):
        d.apply_stage2(applied(), QUALIFIED, True, ORGS, at=AT)


# --- R-EX-02: requirements ----------------------------------------------------------------------

@pytest.mark.parametrize("evidence,route", [
    ({"route": "public_qualification", "qualification": "税理士"}, "public_qualification"),
    ({"route": "public_qualification", "qualification": "公認会計士"}, "public_qualification"),
    ({"route": "public_qualification", "qualification": "弁護士"}, "public_qualification"),
    ({"route": "public_qualification", "qualification": "中小企業診断士"}, "public_qualification"),
    ({"route": "manager_or_engineer", "years": 10}, "manager_or_engineer"),
    ({"route": "sme_support", "years": 3}, "sme_support"),
    ({"route": "teaching_research", "years": 5}, "teaching_research"),
])
def test_R_EX_02_b_each_qualification_route_suffices(evidence, route):
    assert d.qualifying_routes([evidence]) == [route]
    e, _ = d.apply_stage2(recommended(), [evidence], True, ORGS, at=AT)
    assert e["application"]["routes"] == [route]


@pytest.mark.parametrize("evidence", [
    [], [{"route": "public_qualification", "qualification": "英検1級"}], [{"route": "manager_or_engineer", "years": 9}],
    [{"route": "sme_support", "years": 2}], [{"route": "teaching_research", "years": 4.5}], [{"route": "other", "years": 40}],
])
def test_R_EX_02_b_without_a_qualifying_route_the_application_is_refused(evidence):
    with pytest.raises(Rejected) as r:
        d.apply_stage2(recommended(), evidence, True, ORGS, at=AT)
    assert "(b)" in r.value.detail and "(a)" not in r.value.detail


def test_R_EX_02_a_needs_a_recommendation():
    with pytest.raises(Rejected) as r:
        d.apply_stage2(portal(), QUALIFIED, True, ORGS, at=AT)
    assert "(a)" in r.value.detail


def test_R_EX_02_a_institution_initiative_needs_the_experts_consent():
    e, change = d.recommend(portal(), "org-a", MEMBER, at=AT)
    assert change is None and d.effective_recommenders(e, ORGS) == []
    with pytest.raises(Rejected):
        d.apply_stage2(e, QUALIFIED, True, ORGS, at=AT)
    e, change = d.consent(e, "org-a", at=AT)
    assert change == "profile" and d.effective_recommenders(e, ORGS) == ["org-a"]


def test_R_EX_02_a_expert_asks_first_then_the_recommendation_counts_at_once():
    e, change = d.consent(portal(), "org-a", at=AT)
    assert change is None
    e, change = d.recommend(e, "org-a", MEMBER, at=AT)
    assert change == "profile" and d.effective_recommenders(e, ORGS) == ["org-a"]


def test_R_EX_02_a_recommendation_lapses_when_the_institution_leaves_the_platform():
    e = recommended()
    assert d.application_problems(e, QUALIFIED, True, {"org-a": {**MEMBER, "memberships": {}}})[0].startswith("(a)")


def test_R_EX_02_c_needs_the_no_disqualification_declaration():
    with pytest.raises(Rejected) as r:
        d.apply_stage2(recommended(), QUALIFIED, False, ORGS, at=AT)
    assert "(c)" in r.value.detail


def test_R_EX_02_all_missing_items_are_listed_together():
    problems = d.application_problems(portal(), [], False, {})
    assert [p[:3] for p in problems] == ["(a)", "(b)", "(c)"]


# --- R-PF-04: who may recommend -----------------------------------------------------------------

@pytest.mark.parametrize("role,kind,allowed", [
    ("representative", "institution", True),
    ("dispatch_member", "institution", True),
    ("institution", "institution", True),
    ("body", "body", True),
    ("individual", "individual", False),
    ("individual", "institution", False),
    ("representative", "individual", False),  # an individual is never a recommender, whatever the role says
])
def test_R_PF_04_who_may_recommend(role, kind, allowed):
    org = {"kind": kind, "memberships": {"pf": role}}
    assert d.may_recommend(org) is allowed
    if allowed:
        e, _ = d.recommend(portal(), "o", org, at=AT)
        assert e["recommendations"][0]["recommended"]
    else:
        with pytest.raises(Rejected) as r:
            d.recommend(portal(), "o", org, at=AT)
        assert r.value.kind == "forbidden" and "R-PF-04" in r.value.detail


def test_R_PF_04_non_members_and_unknown_orgs_may_not_recommend():
    assert not d.may_recommend(None)
    assert not d.may_recommend({"kind": "institution", "memberships": {}})
    assert not d.may_recommend({"kind": "institution", "memberships": {"pf": "nonsense"}})


# --- R-EX-03: the page ------------------------------------------------------------------------

def test_R_EX_03_profile_edits_are_versioned():
    e = portal(introduction="財務が専門です")
    e2, change = d.edit_profile(e, {"fields": ["tax"], "introduction": "税務も"}, expected_version=1, at=AT)
    assert change == "profile" and e2["version"] == 2 and e2["profile"]["fields"] == ["tax"]
    assert e2["history"] == [{"version": 1, "profile": e["profile"], "replaced_at": AT}]


def test_R_EX_03_stale_edit_is_refused():
    e, _ = d.edit_profile(portal(), {"fields": ["tax"]}, expected_version=None, at=AT)
    with pytest.raises(Rejected) as r:
        d.edit_profile(e, {"fields": ["hr"]}, expected_version=1, at=AT)
    assert r.value.kind == "conflict"


def test_R_EX_03_fields_only_from_the_vocabulary():
    with pytest.raises(Rejected) as r:
        d.edit_profile(portal(), {"fields": ["astrology"]}, expected_version=None, at=AT)
    assert r.value.kind == "invalid" and "astrology" in r.value.detail


def test_R_EX_03_history_is_bounded():
    e = portal()
    for i in range(60):
        e, _ = d.edit_profile(e, {"introduction": str(i)}, expected_version=None, at=AT)
    assert len(e["history"]) == d.DEFAULT.history_keep and e["version"] == 61


def test_R_EX_03_availability_window_blocks_dispatch_that_day_only():
    e, change = d.set_availability(registered(), [{"start": "2026-06-01", "end": "2026-06-30", "note": "長期出張"}],
                                   "6月は出張中のため派遣不可")
    assert change == "availability"
    assert not d.dispatchable(e, date(2026, 6, 15)) and d.dispatchable(e, date(2026, 7, 1))


def test_R_EX_03_window_must_not_end_before_it_starts():
    with pytest.raises(Rejected):
        d.set_availability(portal(), [{"start": "2026-06-30", "end": "2026-06-01"}], "")


def test_R_EX_03_exited_expert_cannot_edit():
    e, _ = d.force_exit(portal(), "revoked", by="identity", at=AT)
    with pytest.raises(Rejected):
        d.edit_profile(e, {}, expected_version=None, at=AT)


# --- R-EX-04: fiscal year, renewal ---------------------------------------------------------------

def test_R_EX_04_registration_expires_with_its_fiscal_year():
    e = registered()
    same, change = d.expire_if_lapsed(e, date(2027, 3, 31))
    assert change is None and same["status"] == "registered"
    e, change = d.expire_if_lapsed(e, date(2027, 4, 1))
    assert change == "expired" and not d.dispatchable(e, date(2027, 4, 1))


def test_R_EX_04_not_dispatchable_after_its_year_even_before_the_sweep():
    assert not d.dispatchable(registered(), date(2027, 4, 1))


def test_R_EX_04_intent_confirmation_renews_for_next_year():
    e, change = d.confirm_renewal(registered(), TODAY, at=AT)
    assert change == "renewed" and e["registered_fiscal_year"] == 2027 and e["registered_years"] == [2026, 2027]
    assert d.dispatchable(e, date(2027, 5, 1))


def test_R_EX_04_renewal_only_from_a_current_registration():
    with pytest.raises(Rejected):
        d.confirm_renewal(portal(), TODAY, at=AT)
    with pytest.raises(Rejected):
        d.confirm_renewal(registered(), date(2027, 5, 1), at=AT)


def _three_years():
    e = registered()
    e, _ = d.confirm_renewal(e, date(2026, 5, 1), at=AT)
    e, _ = d.confirm_renewal(e, date(2027, 5, 1), at=AT)
    assert e["registered_years"] == [2026, 2027, 2028]
    return e


def test_R_EX_04_after_three_years_renewal_goes_to_agency_review():
    e = _three_years()
    e = d.record_dispatch(d.record_dispatch(e, 2027), 2028)
    e["radar"] = {"averages": {"expertise": 4.5}, "count": 8}
    e, change = d.confirm_renewal(e, date(2028, 5, 1), at=AT)
    assert change is None and e["renewal"]["state"] == "review" and e["registered_fiscal_year"] == 2028
    dossier = d.renewal_dossier(e)
    assert dossier == {"consecutive_years": 3, "dispatches": 2, "dispatches_by_fiscal_year": {"2027": 1, "2028": 1},
                       "radar": {"averages": {"expertise": 4.5}, "count": 8}}
    renewed, change = d.review_renewal(e, "renew", [], reviewer="ag", at=AT)
    assert change == "renewed" and renewed["registered_fiscal_year"] == 2029
    assert renewed["renewal"]["dossier"]["dispatches"] == 2  # what the reviewer saw is kept


def test_R_EX_04_declined_renewal_runs_out_at_year_end():
    e, _ = d.confirm_renewal(_three_years(), date(2028, 5, 1), at=AT)
    with pytest.raises(Rejected):
        d.review_renewal(e, "decline", [], reviewer="ag", at=AT)
    e, change = d.review_renewal(e, "decline", ["評価が低い"], reviewer="ag", at=AT)
    assert change is None and e["registered_fiscal_year"] == 2028 and d.dispatchable(e, date(2029, 3, 31))
    e, change = d.expire_if_lapsed(e, date(2029, 4, 1))
    assert change == "expired"


def test_R_EX_04_renewal_review_needs_a_pending_renewal():
    with pytest.raises(Rejected):
        d.review_renewal(registered(), "renew", [], reviewer="ag", at=AT)


def test_R_EX_04_consecutive_years_counts_only_an_unbroken_run():
    assert d.consecutive_years([2020, 2021, 2023, 2024], 2024) == 2
    assert d.consecutive_years([], 2024) == 0


# --- suspension / exit (R-EX-05: never offered for dispatch) ------------------------------------

def test_R_EX_05_suspended_expert_is_not_dispatchable_until_reinstated():
    e, change = d.suspend(registered(), "調査中", by="ag", at=AT)
    assert change == "suspended" and not d.dispatchable(e, TODAY)
    e, change = d.reinstate(e, TODAY, by="ag", at=AT)
    assert change == "reinstated" and e["status"] == "registered" and d.dispatchable(e, TODAY)


def test_R_EX_05_reinstated_after_year_end_is_expired():
    e, _ = d.suspend(registered(), "調査中", by="ag", at=AT)
    e, _ = d.reinstate(e, date(2027, 4, 2), by="ag", at=AT)
    assert e["status"] == "expired"


def test_R_EX_05_forced_exit_is_final_and_idempotent():
    e, change = d.force_exit(registered(), "revoked", by="identity", at=AT)
    assert change == "exited" and not d.dispatchable(e, TODAY)
    again, change = d.force_exit(e, "revoked", by="identity", at=AT)
    assert change is None and again is e
    with pytest.raises(Rejected):
        d.suspend(e, "x", by="ag", at=AT)


def test_R_EX_06_pause_and_a_cap_of_open_dispatches_put_the_expert_on_hold_and_events_go_out_only_when_it_flips():
    e = registered()
    e, change = d.set_capacity(e, paused=False, open_cap=2)
    assert change == "availability" and not d.on_hold(e)
    e, change = d.track_dispatch(e, "dsp-1", "accepted")
    assert change == "" and not d.on_hold(e)
    e, change = d.track_dispatch(e, "dsp-2", "approved")
    assert change == "availability" and d.on_hold(e)
    e, change = d.track_dispatch(e, "dsp-2", "approved")   # a redelivery changes nothing
    assert change == "" and e["capacity"]["open_ids"] == ["dsp-1", "dsp-2"]
    e, change = d.track_dispatch(e, "dsp-1", "reported")
    assert change == "availability" and not d.on_hold(e)
    e, _ = d.set_capacity(e, paused=True, open_cap=None)
    assert d.on_hold(e)
    with pytest.raises(Rejected):
        d.set_capacity(e, paused=False, open_cap=0)


def test_R_EX_06_the_expert_changed_event_carries_the_weekday_calendar():
    from experts_service.store import changed_event
    e, change = d.set_availability(portal(), [], "", [4, 0, 0])
    assert changed_event(e, change).weekdays == [0, 4]
    e, change = d.set_availability(e, [], "", [])
    assert changed_event(e, change).weekdays == []  # none set: any day
