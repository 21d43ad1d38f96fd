"""A stateful property test over the dispatch lifecycle (R-DSP-14), in memory: whatever the order of the parties' acts,
the budget's answers (late, duplicated, refused) and the saga's clock, no path pays beyond the R-DSP-07 caps
(R-DSP-10), pays an unsigned visit (R-ANC-01), or leaves the free dispatch held by a dispatch that gave it up
(R-DSP-03)."""
from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts.events.budget import BudgetCommitted, BudgetRefused, BudgetReserved, ReserveBudget
from contracts.events.dispatch import DispatchStatus as S
from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.domain.saga import SagaParams
from dispatch_service.domain.settlement import findings  # noqa: F401  (the rule the agency approves against)
from servicekit.refusals import Rejected
from tests.unit.test_dispatch_aggregate import LOC, P, T0, apply, approved, requested

BEFORE_APPROVAL = {S.REQUESTED, S.ACCEPTED, S.RESERVED, S.BUDGET_UNANSWERED}


class DispatchLifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.doc = requested(route=None or "A")
        self.now = T0
        self.slot_held = False      # the business's free-dispatch slot, as the store would keep it
        self.visits = 0

    @initialize(start=st.sampled_from(["requested", "approved", "scheduled"]))
    def start(self, start):
        """Start at the request, or further on (so that short runs reach confirmation and payment often)."""
        if start != "requested":
            self.doc, self.slot_held = approved(), True
        if start == "scheduled":
            self.doc = apply(self.doc, Dispatch(self.doc, T0).schedule(None, P, actor="staff-1"))

    # --- the world acts; a Rejected act changes nothing --------------------------------------------------------
    def act(self, f) -> None:
        try:
            ch = f(Dispatch(self.doc, self.now))
        except Rejected:
            return
        if ch is None:
            return
        if ch.set.get("counts_free"):
            self.slot_held = True
        if ch.gives_back_slot:
            self.slot_held = False
        self.doc = apply(self.doc, ch)

    @rule(seconds=st.integers(1, 120))
    def time_passes(self, seconds):
        self.now += timedelta(seconds=seconds)

    @rule()
    def screening_accepts(self):
        self.act(lambda a: a.accept(reserve=ReserveBudget(command_id="reserve-1", frame_id="f", dispatch_id="dsp-1",
                                                          member_id="org-rep", fee=15000, travel=0),
                                    exemption=None, actor="staff-1"))

    @rule(answer=st.sampled_from(["reserved", "refused", "reserved-other"]))
    def budget_answers_reserve(self, answer):
        cid = "reserve-other" if answer == "reserved-other" else "reserve-1"
        if answer == "refused":
            e = BudgetRefused(frame_id="f", dispatch_id="dsp-1", command_id=cid, reason_code="insufficient_balance",
                              reason="none left")
            self.act(lambda a: a.on_budget_refused(e))
        else:
            e = BudgetReserved(frame_id="f", dispatch_id="dsp-1", command_id=cid, member_id="org-rep", amount=15000)
            self.act(lambda a: a.on_reserved(e, "ev"))

    @rule()
    def clock(self):
        self.act(lambda a: a.on_clock(SagaParams(answer_seconds=60, max_attempts=2)))

    @rule()
    def agency_retries(self):
        self.act(lambda a: a.budget_retry(actor="agency-1"))

    @rule()
    def schedule(self):
        self.act(lambda a: a.schedule(None, P, actor="staff-1"))

    @rule(mode=st.sampled_from(["onsite", "online"]))
    def check_in(self, mode):
        self.visits += 1
        self.act(lambda a: a.check_in(visit_id=f"v{self.visits}", mode=mode, location=LOC, accompanied_by=["s"],
                                      prog=P, actor="acct-ex"))

    @rule(minutes=st.integers(1, 600))
    def check_out(self, minutes):
        open_ = [v for v in self.doc.get("visits", []) if v.get("check_in") and not v.get("check_out")]
        if open_:
            self.now = open_[0]["check_in"]["at"] + timedelta(minutes=minutes)
            self.act(lambda a: a.check_out(visit_id=open_[0]["visit_id"], location=LOC, actor="acct-ex"))

    @rule(minutes=st.integers(1, 900), mode=st.sampled_from(["onsite", "online"]))
    def declare_missing_visit(self, minutes, mode):
        self.visits += 1
        self.act(lambda a: a.declare(visit_id=None, new_visit_id=f"v{self.visits}", start=T0,
                                     end=T0 + timedelta(minutes=minutes), mode=mode, reason="forgot to check in",
                                     signature="Ex", actor="acct-ex")[1])

    @rule(index=st.integers(0, 8), agree=st.booleans())
    def business_signs_off(self, index, agree):
        visits = self.doc.get("visits", [])
        if visits:
            vid = visits[index % len(visits)]["visit_id"]
            self.act(lambda a: a.sign_off(visit_id=vid, agree=agree, comment="", actor="acct-biz"))

    @rule()
    def report(self):
        self.act(lambda a: a.report(summary="A plan for new channels.", proposals="", follow_up="", actor="acct-ex"))

    @rule(approve_all=st.booleans())
    def agency_confirms(self, approve_all):
        codes = [f.code for f in Dispatch(self.doc, self.now).findings(P)] if approve_all else []
        self.act(lambda a: a.confirm(P, exemption=None, travel=0, approve=codes, note="", actor="agency-1",
                                     commit_id="commit-1"))

    @rule()
    def budget_commits(self):
        fee = self.doc.get("fee", 0)
        e = BudgetCommitted(frame_id="f", dispatch_id="dsp-1", command_id="commit-1", spent=fee, returned=0)
        self.act(lambda a: a.on_committed(e, "ev"))

    @rule(who=st.sampled_from(["acct-biz", "agency-1"]))
    def cancel(self, who):
        self.act(lambda a: a.cancel("changed plans", actor=who))

    @rule()
    def fraud(self):
        self.act(lambda a: a.fraud("collusion proven", [], actor="agency-1"))

    # --- what must always hold ----------------------------------------------------------------------------------
    @invariant()
    def never_pays_beyond_the_caps_or_for_unsigned_time(self):
        if "paid_minutes" not in self.doc:
            return
        per_visit = int(P.max_hours_per_visit * 60)
        signed = sorted((v for v in self.doc["visits"] if v.get("signed_off")), key=lambda v: v["minutes"] or 0)
        on_site = sorted((min(v["minutes"], per_visit) for v in signed if v["mode"] == "onsite"), reverse=True)
        online = sum(min(v["minutes"], per_visit) for v in signed if v["mode"] == "online")
        most = sum(on_site[:P.max_visits]) + min(online, int(P.max_online_hours * 60))
        assert self.doc["paid_minutes"] <= most
        assert self.doc["fee"] <= self.doc["paid_minutes"] * P.fee_per_hour // 60

    @invariant()
    def the_free_dispatch_is_held_only_by_a_live_dispatch(self):
        status = S(self.doc["status"])
        if status == S.REFUSED:
            assert not self.slot_held
        if status == S.CANCELLED and S(self.doc["cancel"]["from_status"]) in BEFORE_APPROVAL:
            assert not self.slot_held and self.doc.get("slot_release") == "pending"

    @invariant()
    def history_is_a_valid_path(self):
        from dispatch_service.domain.lifecycle import can
        path = [h["status"] for h in self.doc["history"]]
        assert path[0] == "requested" and path[-1] == self.doc["status"]
        assert all(can(a, b) for a, b in zip(path, path[1:]))

    @precondition(lambda self: self.doc["status"] == "paid")
    @invariant()
    def paid_only_after_confirmation(self):
        assert "confirmed" in [h["status"] for h in self.doc["history"]]


TestDispatchLifecycle = DispatchLifecycle.TestCase
TestDispatchLifecycle.settings = settings(max_examples=200, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
