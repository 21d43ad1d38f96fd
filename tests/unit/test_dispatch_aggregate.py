"""The dispatch aggregate, one use case at a time, in memory (R-DSP-03, R-DSP-05, R-DSP-07, R-DSP-08, R-DSP-10..14,
R-ANC-01, the fiscal-year rule of domain.fiscal). `apply` writes a Change the way Store.written does."""
from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.events.budget import (BudgetCommitted, BudgetRefunded, BudgetRefused, BudgetReleased, BudgetReserved,
                                     CommitBudget, CreditRefund, ReleaseBudget, ReserveBudget)
from contracts.events.dispatch import DispatchCompleted, DispatchStatus as S, FraudConfirmed, RefundSettled
from dispatch_service.domain import default_programme, fiscal
from dispatch_service.domain.dispatch import JST, Change, Dispatch, Step
from dispatch_service.domain.eligibility import PlannedVisit, refusal
from dispatch_service.domain.lifecycle import InvalidTransition
from dispatch_service.domain.saga import SagaParams
from servicekit.refusals import Rejected

FY = 2026
P = default_programme(FY)
T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)   # 09:00 in Japan, fiscal year 2026
LOC = {"lat": 32.8, "lon": 130.7, "place": "office"}


def set_path(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    doc[last] = value


def apply(doc: dict, ch: Change | None) -> dict:
    if ch is None:
        return doc
    d = copy.deepcopy(doc)
    for k, v in ch.set.items():
        set_path(d, k, copy.deepcopy(v))
    if ch.gives_back_slot:
        d.update(counts_free=False, slot_release="pending")
    d["history"] = d.get("history", []) + ch.history
    return d


def statuses(ch: Change) -> list[S]:
    return [e.status for e in ch.emits if isinstance(e, Step)]


def of(ch: Change, kind):
    return [e for e in ch.emits if isinstance(e, kind)]


def requested(route: str = "A", **extra) -> dict:
    doc, _ = Dispatch.request({"_id": "dsp-1", "business_id": "biz-1", "expert_id": "ex-1", "issue": "x" * 30,
                               "planned_visits": [{"day": "2026-10-05", "hours": 3, "mode": "onsite"}],
                               "travel_estimate": 2000}, actor="staff-1", now=T0)
    doc.update(route=route, institution_id="org-rep" if route == "A" else None, platform_id="pf-1",
               business_account_id="acct-biz", expert_account_id="acct-ex", accompanying_staff=["staff-1"],
               **extra)
    return doc


def reserve_cmd(fee=15000, travel=2000) -> ReserveBudget:
    return ReserveBudget(command_id="reserve-1", frame_id="frame-2026-pf-1", dispatch_id="dsp-1", member_id="org-rep",
                         fee=fee, travel=travel)


def accepted(**extra) -> dict:
    doc = requested(**extra)
    return apply(doc, Dispatch(doc, T0).accept(reserve=reserve_cmd(), exemption=None, actor="staff-1"))


def approved(**extra) -> dict:
    doc = accepted(**extra)
    e = BudgetReserved(frame_id="frame-2026-pf-1", dispatch_id="dsp-1", command_id="reserve-1", member_id="org-rep",
                       amount=17000)
    return apply(doc, Dispatch(doc, T0).on_reserved(e, "ev-1"))


def visited(minutes=120, signed=True, accompanied=True, mode="onsite", **extra) -> dict:
    doc = approved(**extra)
    doc = apply(doc, Dispatch(doc, T0).schedule(None, P, actor="staff-1"))
    doc = apply(doc, Dispatch(doc, T0).check_in(visit_id="v1", mode=mode, location=LOC,
                                                accompanied_by=["staff-1"] if accompanied else [], prog=P,
                                                actor="acct-ex"))
    doc = apply(doc, Dispatch(doc, T0 + timedelta(minutes=minutes)).check_out(visit_id="v1", location=LOC,
                                                                             actor="acct-ex"))
    if signed:
        doc = apply(doc, Dispatch(doc, T0).sign_off(visit_id="v1", agree=True, comment="", actor="acct-biz"))
    return doc


def reported(**kw) -> dict:
    doc = visited(**kw)
    return apply(doc, Dispatch(doc, T0).report(summary="A plan for new channels.", proposals="", follow_up="",
                                               actor="acct-ex"))


def confirmed(exemption=None, **kw) -> dict:
    doc = reported(**kw)
    return apply(doc, Dispatch(doc, T0).confirm(P, exemption=exemption, travel=None, approve=[], note="",
                                                actor="agency-1", commit_id="commit-1"))


def paid(spent=12000, uncovered=0, **kw) -> dict:
    doc = confirmed(**kw)
    e = BudgetCommitted(frame_id="frame-2026-pf-1", dispatch_id="dsp-1", command_id="commit-1", spent=spent,
                        returned=0, uncovered=uncovered)
    return apply(doc, Dispatch(doc, T0).on_committed(e, "ev-2"))


# --- creation, screening and the budget answers (R-DSP-14, R-DSP-08) ------------------------------------------------
def test_R_DSP_14_a_request_is_requested_then_accepted_with_its_reserve_command_in_the_same_change():
    doc = requested()
    assert doc["status"] == "requested" and doc["fiscal_year"] == FY
    ch = Dispatch(doc, T0).accept(reserve=reserve_cmd(), exemption=None, actor="staff-1")
    assert statuses(ch) == [S.ACCEPTED] and of(ch, ReserveBudget)[0].command_id == "reserve-1"
    assert ch.set["counts_free"] is True and ch.set["reserve"]["attempts"] == 1


def test_R_DSP_06_a_refusal_at_screening_names_every_reason():
    ch = Dispatch(requested(), T0).refuse_screened([refusal("within_self_help"), refusal("advisory_contract")],
                                                   actor="staff-1")
    assert statuses(ch) == [S.REFUSED] and ch.set["reason_code"] == "within_self_help"
    assert [r["code"] for r in ch.set["refusals"]] == ["within_self_help", "advisory_contract"]


def test_R_DSP_14_budget_reserved_moves_accepted_to_reserved_then_approved_and_a_duplicate_does_nothing():
    doc = approved()
    assert doc["status"] == "approved" and [h["status"] for h in doc["history"]][-2:] == ["reserved", "approved"]
    e = BudgetReserved(frame_id="f", dispatch_id="dsp-1", command_id="reserve-1", member_id="org-rep", amount=1)
    assert Dispatch(doc, T0).on_reserved(e, "ev-again") is None


def test_R_DSP_14_a_step_out_of_order_is_a_conflict():
    with pytest.raises(InvalidTransition) as err:
        Dispatch(requested(), T0).report(summary="too early report", proposals="", follow_up="", actor="acct-ex")
    assert isinstance(err.value, Rejected) and err.value.kind == "conflict"


def test_R_DSP_08_a_budget_refusal_refuses_the_request_and_gives_the_free_dispatch_back():
    doc = accepted()
    e = BudgetRefused(frame_id="f", dispatch_id="dsp-1", command_id="reserve-1", reason_code="insufficient_balance",
                      reason="The frame has 0 yen left.")
    ch = Dispatch(doc, T0).on_budget_refused(e)
    assert statuses(ch) == [S.REFUSED] and ch.gives_back_slot and ch.set["reason_code"] == "budget_insufficient_balance"


def test_R_DSP_14_a_reservation_answered_after_cancellation_is_released_compensation():
    doc = accepted()
    doc = apply(doc, Dispatch(doc, T0).cancel("solved otherwise", actor="acct-biz"))
    assert doc["status"] == "cancelled" and doc["slot_release"] == "pending"
    e = BudgetReserved(frame_id="frame-2026-pf-1", dispatch_id="dsp-1", command_id="reserve-1", member_id="org-rep",
                       amount=17000)
    ch = Dispatch(doc, T0).on_reserved(e, "ev-late")
    assert [r.dispatch_id for r in of(ch, ReleaseBudget)] == ["dsp-1"] and statuses(ch) == []
    doc = apply(doc, ch)
    assert Dispatch(doc, T0).on_reserved(e, "ev-late-again") is None  # released once


def test_R_DSP_08_an_unanswered_command_is_re_sent_with_its_id_then_made_visible_and_retried_by_the_agency():
    params = SagaParams(answer_seconds=10, max_attempts=2)
    doc = accepted()
    assert Dispatch(doc, T0 + timedelta(seconds=5)).on_clock(params) is None
    ch = Dispatch(doc, T0 + timedelta(seconds=11)).on_clock(params)
    assert [c.command_id for c in of(ch, ReserveBudget)] == ["reserve-1"] and ch.set["reserve.attempts"] == 2
    doc = apply(doc, ch)
    ch = Dispatch(doc, T0 + timedelta(seconds=30)).on_clock(params)
    assert statuses(ch) == [S.BUDGET_UNANSWERED]
    doc = apply(doc, ch)
    retry = Dispatch(doc, T0 + timedelta(seconds=40)).budget_retry(actor="agency-1")
    assert statuses(retry) == [S.ACCEPTED] and of(retry, ReserveBudget)[0].command_id == "reserve-1"
    with pytest.raises(Rejected):
        Dispatch(approved(), T0).budget_retry(actor="agency-1")


# --- the plan, the visits and the fiscal-year rule (R-DSP-07, R-ANC-01) ------------------------------------------------
def test_R_DSP_07_the_final_plan_is_held_to_the_caps_and_to_the_fiscal_year():
    doc = approved()
    six = tuple(PlannedVisit(date(2026, 11, d), 2.0) for d in range(1, 7))
    with pytest.raises(Rejected) as err:
        Dispatch(doc, T0).schedule(six, P, actor="staff-1")
    assert err.value.kind == "invalid" and err.value.extra["reasons"][0]["code"] == "too_many_visits"
    across = (PlannedVisit(date(2027, 3, 30), 2.0), PlannedVisit(date(2027, 4, 2), 2.0))
    with pytest.raises(Rejected) as err:
        Dispatch(doc, T0).schedule(across, P, actor="staff-1")
    assert [r["code"] for r in err.value.extra["reasons"]] == ["visit_outside_fiscal_year"]


def test_fiscal_year_rule_plans_screening_and_recorded_visits():
    assert [r.code for r in fiscal.plan_problems([date(2026, 10, 1)], 2026, date(2026, 10, 2))] == ["visit_in_the_past"]
    assert fiscal.plan_problems([date(2027, 3, 31)], 2026, date(2026, 10, 1)) == []
    assert [r.code for r in fiscal.screening_problems(2025, date(2026, 4, 1))] == ["fiscal_year_ended"]
    assert fiscal.screening_problems(2026, date(2027, 3, 31)) == []
    doc = apply(approved(), Dispatch(approved(), T0).schedule(None, P, actor="staff-1"))
    late = datetime(2027, 4, 1, 0, 0, tzinfo=UTC)  # 09:00 on 1 April in Japan: fiscal year 2027
    with pytest.raises(Rejected) as err:
        Dispatch(doc, late).check_in(visit_id="v9", mode="onsite", location=LOC, accompanied_by=[], prog=P,
                                     actor="acct-ex")
    assert "fiscal year 2026" in err.value.detail
    with pytest.raises(Rejected):
        Dispatch(doc, late).declare(visit_id=None, new_visit_id="v9", start=late, end=late + timedelta(hours=1),
                                    mode="onsite", reason="forgot to check in", signature="Ex", actor="acct-ex")


def test_R_DSP_07_no_check_in_beyond_the_visits_an_application_may_have():
    doc = visited()
    for i in range(2, P.max_visits + 1):
        doc = apply(doc, Dispatch(doc, T0).check_in(visit_id=f"v{i}", mode="onsite", location=LOC, accompanied_by=[],
                                                    prog=P, actor="acct-ex"))
    with pytest.raises(Rejected) as err:
        Dispatch(doc, T0).check_in(visit_id="v-extra", mode="onsite", location=LOC, accompanied_by=[], prog=P,
                                   actor="acct-ex")
    assert err.value.title == "No visit left"


def test_R_ANC_01_a_declaration_corrects_a_time_and_needs_a_new_sign_off():
    doc = visited(minutes=60)
    assert doc["visits"][0]["signed_off"]
    vid, ch = Dispatch(doc, T0).declare(visit_id="v1", new_visit_id="unused", start=T0, end=T0 + timedelta(hours=2),
                                        mode="onsite", reason="checked out late", signature="Ex", actor="acct-ex")
    doc = apply(doc, ch)
    assert vid == "v1" and doc["visits"][0]["minutes"] == 120 and doc["visits"][0]["signed_off"] is None
    assert statuses(ch) == []  # a correction, not a new visit


# --- confirmation and payment (R-DSP-10, R-DSP-11, R-DSP-12, R-ANC-01) -------------------------------------------------
def test_R_ANC_01_an_unsigned_visit_blocks_confirmation_until_the_agency_approves_it_and_is_then_not_paid():
    doc = reported(signed=False)
    with pytest.raises(Rejected) as err:
        Dispatch(doc, T0).confirm(P, exemption=None, travel=None, approve=[], note="", actor="agency-1")
    assert {f["code"] for f in err.value.extra["findings"]} == {"visit_unsigned", "nothing_verified"}
    ch = Dispatch(doc, T0).confirm(P, exemption=None, travel=500, approve=["visit_unsigned", "nothing_verified"],
                                   note="", actor="agency-1")
    assert of(ch, CommitBudget)[0].fee == 0 and of(ch, CommitBudget)[0].travel == 500


def test_R_DSP_10_the_fee_is_computed_from_signed_time_and_the_rating_is_owed_on_confirmation():
    doc = reported(minutes=150)
    ch = Dispatch(doc, T0).confirm(P, exemption=None, travel=None, approve=[], note="", actor="agency-1",
                                   commit_id="commit-1")
    assert statuses(ch) == [S.CONFIRMED] and ch.set["fee"] == 12500 and ch.set["travel"] == 2000
    assert of(ch, DispatchCompleted)[0].business_account_id == "acct-biz"


def test_R_DSP_11_a_zero_fee_dispatch_reaches_paid():
    doc = paid(exemption="own_employer", spent=2000)
    assert doc["status"] == "paid" and doc["fee"] == 0 and "shortfall" not in doc


def test_R_DSP_10_a_fee_above_what_the_frame_covered_is_an_open_shortfall_until_the_agency_settles_it():
    doc = paid(spent=10000, uncovered=2000)
    assert doc["shortfall"]["status"] == "open" and doc["history"][-1]["status"] == "paid"
    doc = apply(doc, Dispatch(doc, T0).settle_shortfall("topped_up", "paid by the prefecture", actor="agency-1"))
    assert doc["shortfall"]["status"] == "topped_up"
    with pytest.raises(Rejected):
        Dispatch(doc, T0).settle_shortfall("written_off", "again", actor="agency-1")


def test_R_DSP_14_no_cancellation_once_confirmed():
    with pytest.raises(InvalidTransition):
        Dispatch(confirmed(), T0).cancel("too late", actor="acct-biz")


# --- fraud and refund (R-DSP-13) ----------------------------------------------------------------------------------------
def test_R_DSP_13_fraud_after_payment_claims_the_refund_which_is_repaid_to_the_frame_once():
    doc = paid(spent=14000)
    ch = Dispatch(doc, T0).fraud("collusion proven", [], actor="agency-1")
    assert of(ch, FraudConfirmed)[0].refund_claim == 14000 and statuses(ch) == []
    doc = apply(doc, ch)
    assert doc["fraud"]["refund_claim"] == {"amount": 14000, "status": "claimed"}
    with pytest.raises(Rejected):
        Dispatch(doc, T0).settle_refund("repaid", 20000, "more than claimed", actor="agency-1")
    ch = Dispatch(doc, T0).settle_refund("repaid", None, "bank transfer 2026-12-01", actor="agency-1")
    credit = of(ch, CreditRefund)[0]
    assert credit.amount == 14000 and credit.command_id == "refund-dsp-1" and credit.frame_id == "frame-2026-pf-1"
    assert of(ch, RefundSettled)[0].decision == "repaid"
    doc = apply(doc, ch)
    with pytest.raises(Rejected):
        Dispatch(doc, T0).settle_refund("written_off", None, "twice", actor="agency-1")
    answer = BudgetRefunded(frame_id="frame-2026-pf-1", dispatch_id="dsp-1", command_id="refund-dsp-1", amount=14000)
    doc = apply(doc, Dispatch(doc, T0).on_refunded(answer))
    assert doc["fraud"]["refund_claim"]["credit"]["amount"] == 14000
    assert Dispatch(doc, T0).on_refunded(answer) is None


def test_R_DSP_13_a_refund_written_off_moves_no_money_and_fraud_before_approval_cancels_and_gives_the_slot_back():
    doc = apply(paid(spent=14000), Dispatch(paid(spent=14000), T0).fraud("collusion", [], actor="agency-1"))
    ch = Dispatch(doc, T0).settle_refund("written_off", None, "the expert is insolvent", actor="agency-1")
    assert of(ch, CreditRefund) == [] and of(ch, RefundSettled)[0].amount == 0
    ch = Dispatch(accepted(), T0).fraud("collusion", ["acct-x"], actor="agency-1")
    assert statuses(ch) == [S.CANCELLED] and ch.gives_back_slot
    assert of(ch, FraudConfirmed)[0].account_ids == ["acct-biz", "acct-ex", "acct-x"]


# --- accompaniment and follow-up (R-DSP-05) --------------------------------------------------------------------------
def test_R_DSP_05_a_route_A_dispatch_never_accompanied_is_a_finding_unless_a_reason_was_given():
    assert [f.code for f in Dispatch(reported(accompanied=False), T0).findings(P)] == ["not_accompanied"]
    assert Dispatch(reported(accompanied=True), T0).findings(P) == []
    assert Dispatch(reported(accompanied=False, no_accompaniment_reason="staff on leave"), T0).findings(P) == []
    assert Dispatch(reported(accompanied=False, route="B"), T0).findings(P) == []


def test_R_DSP_05_follow_up_records_after_the_report_for_three_fiscal_years():
    with pytest.raises(Rejected):
        Dispatch(approved(), T0).follow_up(note="too early", kind="call", actor="staff-1")
    doc = paid(follow_up_until_fiscal_year=FY + 3)
    doc = apply(doc, Dispatch(doc, T0 + timedelta(days=400)).follow_up(note="sales up 10%", kind="visit",
                                                                        actor="staff-1"))
    assert doc["follow_ups"][0]["note"] == "sales up 10%"
    with pytest.raises(Rejected) as err:
        Dispatch(doc, datetime(2030, 4, 2, tzinfo=UTC)).follow_up(note="too late", kind="call", actor="staff-1")
    assert err.value.title == "Follow-up period over"


def test_R_DSP_14_a_late_release_answer_is_recorded_once():
    doc = approved()
    doc = apply(doc, Dispatch(doc, T0).cancel("business closed", actor="staff-1"))
    rel = doc["release"]["command_id"]
    e = BudgetReleased(frame_id="frame-2026-pf-1", dispatch_id="dsp-1", command_id=rel, amount=17000)
    doc = apply(doc, Dispatch(doc, T0).on_released(e))
    assert doc["release"]["amount"] == 17000 and Dispatch(doc, T0).on_released(e) is None
    assert "slot_release" not in doc  # cancelled after approval: the free dispatch stays used (R-DSP-03)


# --- the expert's capacity and response (R-EX-06) ----------------------------------------------------------------------
def test_R_EX_06_screening_refuses_a_paused_expert_and_one_at_the_cap_of_open_dispatches():
    from dataclasses import replace

    from dispatch_service.domain.eligibility import Application, ExpertState, check_expert
    app = Application(route="A", business_id="biz-1", fiscal_year=FY, issue="x" * 30,
                      planned=(PlannedVisit(date(2026, 10, 5), 2.0),))
    ok = ExpertState(status="registered", registered_fiscal_year=FY)
    assert check_expert(app, ok) == []
    assert [r.code for r in check_expert(app, replace(ok, paused=True))] == ["expert_paused"]
    assert [r.code for r in check_expert(app, replace(ok, open_cap=2, open_now=2))] == ["expert_at_capacity"]
    assert check_expert(app, replace(ok, open_cap=2, open_now=1)) == []


def test_R_EX_06_the_response_deadline_is_two_business_days_and_then_the_desk_may_reassign():
    from dispatch_service.domain.dispatch import business_days_after
    friday = datetime(2026, 10, 2, 3, 0, tzinfo=UTC)  # Friday noon in Japan
    assert business_days_after(friday, 2).astimezone(JST).date() == date(2026, 10, 6)  # Tuesday
    doc = approved()
    assert doc["respond_by"] == business_days_after(T0, 2)
    assert not Dispatch(doc, T0 + timedelta(days=1)).response_overdue()
    late = doc["respond_by"] + timedelta(minutes=1)
    assert Dispatch(doc, late).response_overdue()
    acked = apply(doc, Dispatch(doc, T0).acknowledge(actor="acct-ex"))
    assert not Dispatch(acked, late).response_overdue()
    with pytest.raises(Rejected):
        Dispatch(acked, T0).acknowledge(actor="acct-ex")
    moved = apply(doc, Dispatch(doc, late).reassign(expert_id="ex-2", expert_account_id="acct-ex2", reason="no answer",
                                                    actor="agency-1"))
    assert (moved["expert_id"], moved["expert_account_id"], moved["expert_ack_at"]) == ("ex-2", "acct-ex2", None)
    assert moved["respond_by"] > late and moved["reassignments"][0]["from"] == "ex-1"
    with pytest.raises(Rejected):
        Dispatch(apply(moved, Dispatch(moved, T0).schedule(None, P, actor="s")), T0).reassign(
            expert_id="ex-3", expert_account_id="a", reason="too late now", actor="agency-1")


def test_R_EX_06_a_direct_request_waits_for_the_co_signature_within_the_deadline():
    doc = requested(route="B")
    late = doc["respond_by"] + timedelta(hours=1)
    assert Dispatch(doc, late).response_overdue()
    assert not Dispatch({**doc, "cosigned_at": T0}, late).response_overdue()
