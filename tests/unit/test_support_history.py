"""Support history (個人カルテ) in memory: R-POR-06 (consultation log, sharing with the business's consent, reads
recorded) and R-DSP-05 (route-A follow-ups in the history, reminders about every N months for about three years)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.events.history import FollowUpDue
from contracts.events.notifications import Notify
from dispatch_service.domain import history as h
from dispatch_service.domain.dispatch import Dispatch
from servicekit.refusals import Rejected

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
P = h.FollowUpParams(interval_months=6, years=3)
MINE, OTHER, THIRD = "org-shoko", "org-bank", "org-third"


def entry(eid: str, org: str, day: str) -> dict:
    return {"_id": eid, "business_id": "biz-1", "org_id": org, "consulted_on": day, "topic": "資金繰り",
            "summary": "相談内容", "next_steps": "次回", "staff": "山田", "logged_by": f"acc-{org}", "logged_at": T0}


ENTRIES = [entry("e1", MINE, "2026-09-01"), entry("e2", OTHER, "2026-09-15"), entry("e3", THIRD, "2026-08-01")]
ROUTE_A = {"_id": "dsp-a", "route": "A", "institution_id": OTHER,
           "follow_ups": [{"at": T0 + timedelta(days=3), "by": "acc-bank", "kind": "call", "note": "pilot running"}]}
ROUTE_B = {"_id": "dsp-b", "route": "B", "institution_id": None, "follow_ups": []}


def ids(items: list[dict]) -> set[str]:
    return {i.get("entry_id") or f"fu:{i['dispatch_id']}" for i in items}


# --- R-POR-06 ----------------------------------------------------------------------------------------------------------
def test_R_POR_06_an_institution_without_a_grant_sees_only_its_own_entries():
    viewer = h.Viewer("institution", frozenset({MINE}), shared=False)
    items = h.view(ENTRIES, [ROUTE_A], viewer)
    assert ids(items) == {"e1"}
    assert h.others_read(items, viewer) == []  # nothing of another institution read: nothing recorded


def test_R_POR_06_an_institution_the_business_shares_with_sees_the_whole_history_and_the_read_is_recorded():
    viewer = h.Viewer("institution", frozenset({MINE}), shared=True)
    items = h.view(ENTRIES, [ROUTE_A], viewer)
    assert ids(items) == {"e1", "e2", "e3", "fu:dsp-a"}
    assert h.others_read(items, viewer) == [OTHER, THIRD]


def test_R_POR_06_the_business_sees_all_of_its_history_and_its_own_reads_are_not_recorded():
    viewer = h.Viewer("business")
    items = h.view(ENTRIES, [ROUTE_A, ROUTE_B], viewer)
    assert ids(items) == {"e1", "e2", "e3", "fu:dsp-a"}
    assert [i["date"] for i in items] == sorted((i["date"] for i in items), reverse=True)  # newest first
    assert h.others_read(items, viewer) == []


def test_R_POR_06_oversight_reads_by_the_agency_are_recorded_for_the_business():
    viewer = h.Viewer("oversight")
    items = h.view(ENTRIES, [], viewer)
    assert ids(items) == {"e1", "e2", "e3"} and h.others_read(items, viewer) == sorted([MINE, OTHER, THIRD])


def test_R_POR_06_grant_then_withdraw_then_grant_again_each_act_listed():
    assert not h.in_force(None)
    g = h.grant(None, business_id="biz-1", org_id=OTHER, actor="acc-prime", now=T0)
    assert h.in_force(g) and g["acts"] == [{"act": "granted", "by": "acc-prime", "at": T0}]
    assert h.grant(g, business_id="biz-1", org_id=OTHER, actor="acc-prime", now=T0) is None  # twice: nothing
    w = {**g, **h.withdraw(g, org_id=OTHER, actor="acc-member", now=T0 + timedelta(days=1))}
    assert not h.in_force(w) and [a["act"] for a in w["acts"]] == ["granted", "withdrawn"]
    with pytest.raises(Rejected) as no:
        h.withdraw(w, org_id=OTHER, actor="acc-prime", now=T0)
    assert no.value.kind == "conflict"
    again = {**w, **h.grant(w, business_id="biz-1", org_id=OTHER, actor="acc-prime", now=T0 + timedelta(days=2))}
    assert h.in_force(again) and [a["act"] for a in again["acts"]] == ["granted", "withdrawn", "granted"]


def test_R_POR_06_withdrawing_a_grant_never_given_is_refused():
    with pytest.raises(Rejected) as no:
        h.withdraw(None, org_id=OTHER, actor="acc-prime", now=T0)
    assert no.value.kind == "conflict"


def test_R_POR_06_a_consultation_is_logged_once_held_and_for_the_staffs_own_institution():
    h.check_entry(date(2026, 10, 1), date(2026, 10, 1))
    with pytest.raises(Rejected):
        h.check_entry(date(2026, 10, 2), date(2026, 10, 1))
    assert h.logging_org([MINE], None) == MINE
    assert h.logging_org([MINE, OTHER], OTHER) == OTHER
    with pytest.raises(Rejected) as other:
        h.logging_org([MINE], OTHER)
    assert other.value.kind == "forbidden"
    with pytest.raises(Rejected) as which:
        h.logging_org([MINE, OTHER], None)
    assert which.value.kind == "invalid"


# --- R-DSP-05 ----------------------------------------------------------------------------------------------------------
def test_R_DSP_05_route_a_follow_ups_are_items_of_the_history_of_the_requesting_institution():
    assert h.follow_up_items(ROUTE_B) == []
    [item] = h.follow_up_items(ROUTE_A)
    assert item["kind"] == "follow_up" and item["org_id"] == OTHER and item["note"] == "pilot running"
    # the requesting institution sees its own follow-ups without any grant
    assert ids(h.view([], [ROUTE_A], h.Viewer("institution", frozenset({OTHER})))) == {"fu:dsp-a"}


def reported(**extra) -> dict:
    return {"_id": "dsp-a", "business_id": "biz-1", "route": "A", "institution_id": OTHER,
            "report": {"filed_at": T0}, "follow_ups": [], **extra}


def test_R_DSP_05_a_period_without_a_follow_up_is_due_at_its_end():
    d = reported()
    assert h.follow_up_due(d, T0 + timedelta(days=179), P) is None
    period, due, until = h.follow_up_due(d, T0 + timedelta(days=181), P)
    assert (period, due, until) == (1, T0 + timedelta(days=180), T0 + timedelta(days=1080))
    assert h.follow_up_due(reported(route="B"), T0 + timedelta(days=181), P) is None


def test_R_DSP_05_a_follow_up_recorded_in_the_period_means_no_reminder():
    d = reported(follow_ups=[{"at": T0 + timedelta(days=90)}])
    assert h.follow_up_due(d, T0 + timedelta(days=181), P) is None
    # the next period without one is due at its end
    assert h.follow_up_due(d, T0 + timedelta(days=361), P)[0] == 2


def test_R_DSP_05_each_period_reminded_once_and_none_after_about_three_years():
    d = reported(follow_up_reminded=[1])
    assert h.follow_up_due(d, T0 + timedelta(days=200), P) is None
    assert h.follow_up_due(d, T0 + timedelta(days=1080 + 1), P)[0] == 6     # the last period, ending at 3 years
    assert h.follow_up_due(reported(follow_up_reminded=[6]), T0 + timedelta(days=1200), P) is None
    assert h.follow_up_due(reported(), T0 + timedelta(days=1080 + 181), P) is None  # long over
    assert h.FollowUpParams(interval_months=4, years=3).periods == 9


def test_R_DSP_05_the_clock_emits_FollowUpDue_once_per_period():
    d = reported(fiscal_year=2026, status="reported")
    ch = Dispatch(d, T0 + timedelta(days=185)).follow_up_reminder(P)
    [e, notice] = ch.emits
    assert isinstance(e, FollowUpDue) and (e.period, e.institution_id, e.business_id) == (1, OTHER, "biz-1")
    assert e.key() == "biz-1" and ch.set == {"follow_up_reminded": [1]}
    # the reminder reaches the institution's people, once per period (the id is the idempotency key)
    assert isinstance(notice, Notify) and notice.template == "follow_up_due"
    assert (notice.recipient_id, notice.recipient_kind) == (OTHER, "organisation")
    assert notice.notification_id == f"follow-up-{d['_id']}-1" and notice.params["period"] == "1"
    assert Dispatch({**d, **ch.set}, T0 + timedelta(days=186)).follow_up_reminder(P) is None
