"""Budget frame rules (pure, no I/O): R-BUD-01..05, R-DSP-08, R-PF-04, R-PF-05."""
from dataclasses import asdict

import pytest

from budget_service.domain import Frame, bureau_may, place_problem, recompute, report_blocks
from servicekit.refusals import Rejected

AT = "2026-05-01T00:00:00Z"
REP, MEM, OTHER = "org-rep", "org-mem", "org-other"


def frame(fee=100_000, travel=20_000) -> Frame:
    return Frame.allocate(frame_id="frame-2026-p1", fiscal_year=2026, platform_id="p1", representative_id=REP,
                          bureau_id="kanto", fee=fee, travel=travel, actor="bureau-user", why="FY2026 frame", at=AT)


def reserve(f, cid, member=MEM, role="dispatch_member", fee=10_000, travel=0, dispatch=None):
    return f.reserve(command_id=cid, dispatch_id=dispatch or f"d-{cid}", member_id=member, member_role=role,
                     fee=fee, travel=travel, actor="dispatch", at=AT)


def ledger_matches(f: Frame) -> bool:
    return recompute(f.new_entries) == f.balances.normalised()


def test_R_BUD_01_bureau_allocates_fee_and_travel_to_the_representative():
    f = frame()
    assert (f.balances.allocated_fee, f.balances.allocated_travel, f.balances.allocated) == (100_000, 20_000, 120_000)
    assert f.available(REP) == 120_000
    assert f.new_entries[0].kind == "allocation" and f.new_entries[0].actor == "bureau-user"


def test_R_BUD_01_allocation_cannot_shrink_below_what_is_shared_or_used():
    f = frame()
    f.set_share(MEM, "dispatch_member", 50_000, actor="rep", why="", at=AT)
    reserve(f, "c1", member=REP, role="representative", fee=30_000)
    with pytest.raises(Rejected) as e:
        f.change_allocation(fee=70_000, travel=0, actor="b", why="", at=AT)
    assert e.value.extra["code"] == "below_commitments"
    f.change_allocation(fee=80_000, travel=0, actor="b", why="cut", at=AT)
    assert f.balances.allocated == 80_000 and ledger_matches(f)


@pytest.mark.parametrize("bad", [1.5, -1, "100", True])
def test_R_BUD_01_amounts_are_integer_yen_only(bad):
    with pytest.raises(Rejected):
        frame(fee=bad)


def test_R_BUD_02_member_dispatches_only_within_its_share():
    f = frame()
    f.set_share(MEM, "dispatch_member", 25_000, actor="rep", why="", at=AT)
    assert reserve(f, "c1", fee=20_000).kind == "reserved"
    a = reserve(f, "c2", fee=10_000)
    assert (a.kind, a.reason_code) == ("refused", "insufficient_balance")
    assert f.balances.reserved == {MEM: 20_000}


def test_R_BUD_02_representative_only_within_what_it_has_not_given_away():
    f = frame()
    f.set_share(MEM, "dispatch_member", 100_000, actor="rep", why="", at=AT)
    assert reserve(f, "c1", member=REP, role="representative", fee=20_000).kind == "reserved"
    assert reserve(f, "c2", member=REP, role="representative", fee=1).reason_code == "insufficient_balance"
    with pytest.raises(Rejected) as e:  # shares come only out of the unshared, unused remainder
        f.set_share(OTHER, "dispatch_member", 1, actor="rep", why="", at=AT)
    assert e.value.extra["code"] == "insufficient_balance"


def test_R_BUD_02_representative_has_no_share_to_return():
    """Found by the property test: 'returning' the representative's own use once counted it as shared too."""
    f = frame(fee=0, travel=2)
    assert reserve(f, "c1", member=REP, role="representative", fee=0, travel=2).kind == "reserved"
    with pytest.raises(Rejected) as e:
        f.return_share(REP, actor="rep", why="", at=AT)
    assert e.value.extra["code"] == "not_allowed" and f.violations() == [] and ledger_matches(f)


def test_R_BUD_02_share_lowered_never_below_reserved_plus_spent_and_returned():
    f = frame()
    f.set_share(MEM, "dispatch_member", 50_000, actor="rep", why="", at=AT)
    reserve(f, "c1", fee=10_000)
    f.commit(command_id="k1", dispatch_id="d-c1", fee=8_000, travel=0, actor="agency", at=AT)
    reserve(f, "c2", fee=5_000)
    with pytest.raises(Rejected) as e:
        f.set_share(MEM, "dispatch_member", 12_999, actor="rep", why="", at=AT)
    assert e.value.extra["code"] == "below_commitments"
    assert f.return_share(MEM, actor="rep", why="year end", at=AT) == 37_000
    assert f.balances.shares[MEM] == 13_000 and f.available(MEM) == 0
    assert ledger_matches(f)


@pytest.mark.parametrize("role", ["institution", "body", "individual", None])
def test_R_PF_04_only_representative_and_dispatch_members_hold_budget(role):
    f = frame()
    with pytest.raises(Rejected) as e:
        f.set_share(OTHER, role, 1_000, actor="rep", why="", at=AT)
    assert e.value.extra["code"] == "not_allowed"
    assert reserve(f, "c1", member=OTHER, role=role).reason_code == "not_allowed"


def test_R_DSP_08_dispatch_only_within_the_requesting_institutions_frame():
    f = frame(fee=10_000, travel=0)
    assert reserve(f, "c1", member=REP, role="representative", fee=10_000).kind == "reserved"
    assert reserve(f, "c2", member=REP, role="representative", fee=1).reason_code == "insufficient_balance"
    assert reserve(f, "c3", member=MEM, fee=1).reason_code == "insufficient_balance"  # no share at all


def test_R_BUD_03_duplicate_command_returns_original_answer_and_moves_nothing():
    f = frame()
    f.set_share(MEM, "dispatch_member", 10_000, actor="rep", why="", at=AT)
    first = reserve(f, "c1", fee=10_000)
    entries = len(f.new_entries)
    assert reserve(f, "c1", fee=10_000) == first
    f.release(command_id="r1", dispatch_id="d-c1", reason="", actor="x", at=AT)
    assert reserve(f, "c1", fee=10_000) == first  # still the original answer, even after the release
    assert f.balances.reserved_total == 0 and len(f.new_entries) == entries + 1


def test_R_BUD_03_same_dispatch_under_a_new_command_id_is_not_reserved_twice():
    f = frame()
    reserve(f, "c1", member=REP, role="representative", fee=1_000, dispatch="d1")
    again = reserve(f, "c2", member=REP, role="representative", fee=1_000, dispatch="d1")
    assert again.kind == "reserved" and f.balances.reserved_total == 1_000


def test_R_BUD_04_commit_below_reservation_returns_the_difference():
    f = frame()
    reserve(f, "c1", member=REP, role="representative", fee=30_000, travel=5_000)
    a = f.commit(command_id="k1", dispatch_id="d-c1", fee=25_000, travel=4_000, actor="agency", at=AT)
    assert (a.kind, a.spent, a.returned, a.uncovered) == ("committed", 29_000, 6_000, 0)
    assert f.balances.spent_fee == {REP: 25_000} and f.balances.spent_travel == {REP: 4_000}
    assert f.balances.reserved_total == 0 and f.balances.remaining == 120_000 - 29_000
    assert ledger_matches(f)


def test_R_BUD_04_commit_above_reservation_takes_extra_only_from_available_and_caps():
    f = frame(fee=40_000, travel=0)
    f.set_share(MEM, "dispatch_member", 12_000, actor="rep", why="", at=AT)
    reserve(f, "c1", fee=10_000)
    a = f.commit(command_id="k1", dispatch_id="d-c1", fee=15_000, travel=0, actor="agency", at=AT)
    assert (a.spent, a.returned, a.uncovered) == (12_000, 0, 3_000)
    assert f.balances.spent(MEM) == 12_000 and not f.violations()
    assert ledger_matches(f)


def test_R_BUD_04_release_returns_the_reservation_and_is_idempotent():
    f = frame()
    reserve(f, "c1", member=REP, role="representative", fee=50_000)
    a = f.release(command_id="r1", dispatch_id="d-c1", reason="cancelled", actor="dispatch", at=AT)
    assert (a.kind, a.amount) == ("released", 50_000)
    assert f.release(command_id="r1", dispatch_id="d-c1", reason="", actor="dispatch", at=AT) == a
    assert f.release(command_id="r2", dispatch_id="d-c1", reason="", actor="dispatch", at=AT).kind == "ignored"
    assert f.available(REP) == 120_000 and ledger_matches(f)


def test_R_DSP_14_commit_without_reservation_moves_nothing():
    f = frame()
    a = f.commit(command_id="k1", dispatch_id="nope", fee=1, travel=0, actor="agency", at=AT)
    assert a.kind == "ignored" and f.balances.spent_total == 0


def test_R_BUD_03_closed_frame_refuses_new_reservations_but_settles_open_ones():
    f = frame()
    reserve(f, "c1", member=REP, role="representative", fee=1_000)
    assert f.close(actor="bureau", why="FY end", at=AT) == ["d-c1"]
    assert reserve(f, "c2", member=REP, role="representative").reason_code == "frame_closed"
    assert f.commit(command_id="k1", dispatch_id="d-c1", fee=1_000, travel=0, actor="a", at=AT).kind == "committed"
    with pytest.raises(Rejected):
        f.change_allocation(fee=1, travel=0, actor="b", why="", at=AT)


def test_R_BUD_05_every_change_is_a_ledger_entry_with_actor_and_why():
    f = frame()
    f.set_share(MEM, "dispatch_member", 10_000, actor="rep-user", why="for Q1", at=AT)
    reserve(f, "c1", fee=1_000)
    f.release(command_id="r1", dispatch_id="d-c1", reason="cancelled", actor="dispatch", at=AT)
    f.close(actor="bureau", why="FY end", at=AT)
    kinds = [(e.kind, e.actor) for e in f.new_entries]
    assert kinds == [("allocation", "bureau-user"), ("share", "rep-user"), ("reservation", "dispatch"),
                     ("release", "dispatch"), ("close", "bureau")]
    assert [e.seq for e in f.new_entries] == [1, 2, 3, 4, 5] and all(e.why for e in f.new_entries)
    assert ledger_matches(f)


def test_R_BUD_05_state_round_trip_keeps_balances_and_answers():
    f = frame()
    f.set_share(MEM, "dispatch_member", 10_000, actor="rep", why="", at=AT)
    a = reserve(f, "c1", fee=1_000)
    g = Frame.from_state(f.frame_id, f.state(), [x.to_dict() for x in f.new_answers],
                         [asdict(r) for state, r in f.reservation_changes if state == "open"])
    assert g.balances.normalised() == f.balances.normalised() and g.answers["c1"] == a
    assert g.entry_count == len(f.new_entries) and g.reservations == f.reservations


def test_R_BUD_03_a_settled_dispatch_cannot_reserve_again():
    f = frame()
    reserve(f, "c1", member=REP, role="representative", fee=1_000, dispatch="d1")
    f.release(command_id="r1", dispatch_id="d1", reason="", actor="x", at=AT)
    again = reserve(f, "c2", member=REP, role="representative", fee=1_000, dispatch="d1")
    assert (again.kind, again.reason_code) == ("refused", "not_allowed") and f.balances.reserved_total == 0


def test_R_DSP_10_travel_costs_are_charged_to_the_frame_too():
    f = frame(fee=30_000, travel=5_000)
    assert reserve(f, "c1", member=REP, role="representative", fee=30_000, travel=5_000).amount == 35_000
    assert reserve(f, "c2", member=REP, role="representative", fee=0, travel=1).reason_code == "insufficient_balance"
    a = f.commit(command_id="k1", dispatch_id="d-c1", fee=30_000, travel=4_000, actor="agency", at=AT)
    assert (a.spent, a.returned) == (34_000, 1_000) and f.balances.spent_travel == {REP: 4_000}


def test_R_DSP_14_cancel_before_payment_releases_the_budget():
    f = frame(fee=10_000, travel=0)
    reserve(f, "c1", member=REP, role="representative", fee=10_000)
    assert f.release(command_id="r1", dispatch_id="d-c1", reason="cancelled", actor="dispatch", at=AT).amount == 10_000
    assert reserve(f, "c2", member=REP, role="representative", fee=10_000).kind == "reserved"


# --- R-PF-05: least privilege by place ------------------------------------------------------------------
def test_R_PF_05_a_bureau_may_act_only_on_frames_of_its_own_block():
    assert bureau_may("kanto", frame().bureau_id)
    assert not bureau_may("kyushu", frame().bureau_id)
    assert not bureau_may(None, "kanto") and not bureau_may("kanto", None) and not bureau_may(None, None)


def test_R_PF_05_place_problem_refuses_other_blocks_and_bureaus_without_a_block():
    assert place_problem({"bureau"}, "kanto", "kanto") is None
    assert "block kyushu" in place_problem({"bureau"}, "kanto", "kyushu")
    assert "no known block" in place_problem({"bureau"}, "kanto", None)
    assert place_problem({"bureau"}, "kanto", any_block=True) is None
    assert "carries no block" in place_problem({"bureau"}, None, "kanto")
    assert "carries no block" in place_problem({"bureau"}, None, any_block=True)
    for roles in ({"agency"}, {"operator"}, {"institution"}):
        assert place_problem(roles, None, "kyushu") is None


def test_R_PF_05_R_BUD_05_a_bureau_s_reports_cover_its_block_only():
    assert report_blocks({"bureau"}, "kanto", None) == ("kanto", None)
    assert report_blocks({"bureau"}, "kanto", "kanto") == ("kanto", None)
    block, problem = report_blocks({"bureau"}, "kanto", "kyushu")
    assert block is None and "block kyushu" in problem
    block, problem = report_blocks({"bureau"}, None, None)
    assert block is None and "carries no block" in problem
    assert report_blocks({"agency"}, None, None) == (None, None)        # national: every block ...
    assert report_blocks({"operator"}, None, "kyushu") == ("kyushu", None)  # ... or the one asked for
    assert report_blocks({"institution"}, None, "kyushu") == ("kyushu", None)  # R-PF-04 limits institutions


@pytest.mark.parametrize("settle", ["commit", "release"])
def test_R_DSP_11_R_BUD_04_a_zero_fee_dispatch_reserves_saves_reloads_and_settles(settle):
    """A dispatch whose fee is 0 (R-DSP-11: the expert's own employer, personnel costs subsidised) reserves 0 yen; the
    stored balances drop the zero entry, and the reloaded frame must still commit or release it (it used to fail)."""
    f = frame()
    f.set_share(MEM, "dispatch_member", 50_000, actor="rep", why="", at=AT)
    assert reserve(f, "c0", fee=0, travel=0).kind == "reserved"
    reloaded = Frame.from_state(f.frame_id, f.state(), reservations=[{"state": "open", **asdict(r)}
                                                                    for r in f.reservations.values()])
    if settle == "commit":
        a = reloaded.commit(command_id="k0", dispatch_id="d-c0", fee=0, travel=0, actor="agency", at=AT)
        assert (a.kind, a.spent, a.uncovered) == ("committed", 0, 0)
    else:
        assert reloaded.release(command_id="r0", dispatch_id="d-c0", reason="", actor="x", at=AT).kind == "released"
    assert reloaded.violations() == []


def test_R_DSP_13_R_BUD_05_a_refund_repaid_after_fraud_returns_to_the_member_that_spent_it_once():
    f = frame()
    reserve(f, "c1", member=REP, role="representative", fee=10_000, travel=2_000, dispatch="d1")
    f.commit(command_id="k1", dispatch_id="d1", fee=9_000, travel=2_000, actor="dispatch", at=AT)
    assert (f.balances.spent(REP), f.available(REP)) == (11_000, 109_000)
    a = f.credit_refund(command_id="refund-d1", dispatch_id="d1", member_id=REP, amount=11_000, actor="dispatch", at=AT)
    assert (a.kind, a.amount, f.balances.spent(REP), f.available(REP)) == ("refunded", 11_000, 0, 120_000)
    assert f.new_entries[-1].kind == "refund" and (f.new_entries[-1].spent_fee, f.new_entries[-1].spent_travel) == (-9_000, -2_000)
    again = f.credit_refund(command_id="refund-d1", dispatch_id="d1", member_id=REP, amount=11_000, actor="d", at=AT)
    assert again is a and f.balances.spent(REP) == 0  # the same command id moves nothing twice
    assert ledger_matches(f) and not f.violations()


def test_R_DSP_13_a_refund_never_credits_more_than_was_spent_nor_for_a_dispatch_that_spent_nothing_here():
    f = frame()
    reserve(f, "c1", member=REP, role="representative", fee=5_000, dispatch="d1")
    f.commit(command_id="k1", dispatch_id="d1", fee=5_000, travel=0, actor="dispatch", at=AT)
    a = f.credit_refund(command_id="r1", dispatch_id="d1", member_id=REP, amount=50_000, actor="dispatch", at=AT)
    assert a.amount == 5_000 and f.balances.spent(REP) == 0 and not f.violations()
    b = f.credit_refund(command_id="r2", dispatch_id="d-unknown", member_id=REP, amount=1_000, actor="d", at=AT)
    assert b.kind == "ignored" and f.balances.spent(REP) == 0
