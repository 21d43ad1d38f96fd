"""Findings before payment (R-DSP-07 on actual work, R-ANC-01 sign-off), pure: nothing is cut silently."""
from datetime import date

from dispatch_service.domain import default_programme
from dispatch_service.domain.fees import VisitTime
from dispatch_service.domain.settlement import findings

P = default_programme(2026)  # 5 on-site visits of at most 3 h, 15 h online
D = date(2026, 10, 1)


def codes(visits, open_visits=0):
    return [f.code for f in findings(visits, open_visits, P)]


def test_R_ANC_01_signed_work_within_the_caps_has_no_findings():
    assert codes([VisitTime(D, 120), VisitTime(D, 180, "online")]) == []


def test_R_ANC_01_unsigned_or_open_visits_are_findings_and_no_signed_visit_at_all_too():
    assert codes([VisitTime(D, 120), VisitTime(D, 60, verified=False)]) == ["visit_unsigned"]
    assert codes([VisitTime(D, 60, verified=False)]) == ["visit_unsigned", "nothing_verified"]
    assert codes([VisitTime(D, 60)], open_visits=1) == ["visit_open"]


def test_R_DSP_07_caps_apply_to_the_work_done_not_only_to_the_plan():
    assert codes([VisitTime(D, 60)] * 6) == ["too_many_visits"]
    assert codes([VisitTime(D, 181)]) == ["visit_too_long"]
    assert codes([VisitTime(D, 15 * 60 + 1, "online")]) == ["online_hours_exceeded"]


def test_R_DSP_07_what_is_paid_stays_within_the_caps_even_when_the_agency_approves_more_work():
    from dispatch_service.domain.fees import compute_fee
    six_on_site = [VisitTime(date(2026, 10, d), 120) for d in range(1, 7)]
    assert compute_fee(six_on_site, P).paid_minutes == 5 * 120  # the sixth visit is not paid
    seven_online = [VisitTime(date(2026, 10, d), 180, "online") for d in range(1, 8)]
    assert compute_fee(seven_online, P).paid_minutes == 15 * 60  # 21 h done, 15 h paid
    assert compute_fee([VisitTime(D, 240)], P).paid_minutes == 180  # 3 h per visit
