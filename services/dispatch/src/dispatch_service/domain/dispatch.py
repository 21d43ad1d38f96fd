"""The dispatch aggregate (R-DSP-14): every change of a dispatch, creation included, goes through one method here.

Each method checks its rules against the dispatch as stored, applies the lifecycle transition and returns a `Change`:
the fields to set, the history lines, the events and commands to publish and whether the free dispatch goes back.
Pure: no I/O and no clock (the caller passes `now`); the store writes a Change with its events in one update
(`Store.apply`). The saga's reactions to budget answers are methods too (`on_reserved` … `on_refunded`), so the whole
lifecycle can be driven — and property-tested — without a database.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from contracts.envelope import Message
from contracts.events.budget import (BudgetCommitted, BudgetRefunded, BudgetRefused, BudgetReleased, BudgetReserved,
                                     CommitBudget, CreditRefund, ReleaseBudget, ReserveBudget)
from contracts.events.dispatch import DispatchCompleted, DispatchStatus as S, FraudConfirmed, RefundSettled
from contracts.events.notifications import Notify
from dispatch_service.domain import fiscal
from dispatch_service.domain.eligibility import PlannedVisit, Refusal, check_visit_caps, refusal
from dispatch_service.domain.fees import ON_SITE, VisitTime, compute_fee
from dispatch_service.domain.lifecycle import BEFORE_APPROVAL, RESERVED_STATUSES, InvalidTransition, can
from dispatch_service.domain.programmes import Programme
from dispatch_service.domain.saga import SagaParams, overdue, waiting_for
from dispatch_service.domain.settlement import findings
from servicekit.refusals import Rejected

JST = ZoneInfo("Asia/Tokyo")
UNANSWERED_REASON = "The budget service has not answered; the agency can retry (R-DSP-08)."


RESPONSE_BUSINESS_DAYS = 2  # R-EX-06 (param): the expert answers within 2 business days


def business_days_after(at: datetime, days: int) -> datetime:
    """`days` business days (Monday–Friday, Japan time; public holidays not counted out) after `at`."""
    t = at
    while days > 0:
        t += timedelta(days=1)
        if t.astimezone(JST).weekday() < 5:
            days -= 1
    return t


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Step:
    """A lifecycle step to publish as DispatchStatusChanged."""

    status: S
    reason_code: str | None = None
    reason: str | None = None
    fee: int | None = None
    travel: int | None = None


@dataclass
class Change:
    """What one use case does to a dispatch; `Store.apply` writes it (and its events) in one conditional update."""

    set: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    emits: list[Step | Message] = field(default_factory=list)
    gives_back_slot: bool = False   # the free dispatch returns to the business (R-DSP-03) once written
    action: str | None = None       # the audit action of a change that publishes nothing

    def then(self, other: "Change") -> "Change":
        """This change followed by `other` in the same write (e.g. co-sign, then screening)."""
        return Change(set={**self.set, **other.set}, history=self.history + other.history,
                      emits=self.emits + other.emits, gives_back_slot=self.gives_back_slot or other.gives_back_slot,
                      action=other.action or self.action)


def plan_doc(plan: tuple[PlannedVisit, ...] | list[PlannedVisit]) -> list[dict]:
    return [{"day": v.day.isoformat(), "hours": v.hours, "mode": v.mode} for v in plan]


def visit_minutes(v: dict) -> int | None:
    """R-ANC-01: a visit's time is known once declared, or checked in and out."""
    if v.get("declaration"):
        s, e = v["declaration"]["start"], v["declaration"]["end"]
    elif v.get("check_in") and v.get("check_out"):
        s, e = v["check_in"]["at"], v["check_out"]["at"]
    else:
        return None
    return max(0, int((e - s).total_seconds() // 60))


def visit_day(v: dict) -> date:
    start = v["declaration"]["start"] if v.get("declaration") else v["check_in"]["at"]
    return start.astimezone(JST).date()


def visit_times(doc: dict) -> list[VisitTime]:
    """R-ANC-01: the visits whose time is known; `verified` once the business signed them off."""
    return [VisitTime(visit_day(v), m, v["mode"], verified=bool(v.get("signed_off")))
            for v in doc.get("visits", []) if (m := visit_minutes(v)) is not None]


def accompaniment_findings(doc: dict) -> list:
    """R-DSP-05: on route A the institution's staff accompany the expert in principle; a dispatch whose visits were
    never accompanied, with no reason given at the request, is a finding for the agency."""
    from dispatch_service.domain.settlement import Finding

    if doc.get("route") != "A" or doc.get("no_accompaniment_reason"):
        return []
    done = [v for v in doc.get("visits", []) if visit_minutes(v) is not None and v["mode"] == ON_SITE]
    if done and not any(v.get("accompanied_by") for v in done):
        return [Finding("not_accompanied", "R-DSP-05", "No on-site visit was accompanied by the institution's staff, "
                                                       "and the request gave no reason.")]
    return []


class Dispatch:
    """One dispatch, as stored (a dict), with its use cases as methods."""

    def __init__(self, doc: dict, now: datetime):
        self.doc, self.now = doc, now

    @property
    def status(self) -> S:
        return S(self.doc["status"])

    # --- helpers --------------------------------------------------------------------------------------
    def _guard(self, wanted: S) -> None:
        if not can(self.status, wanted):
            raise InvalidTransition(self.status, wanted)

    def _step(self, ch: Change, *statuses: S, actor: str | None, reason_code: str | None = None,
              reason: str | None = None, fee: int | None = None, travel: int | None = None) -> Change:
        cur = self.status
        for s in statuses:
            if not can(cur, s):
                raise InvalidTransition(cur, s)
            cur = s
            ch.history.append({"status": s.value, "at": self.now, "actor": actor, "reason_code": reason_code})
            ch.emits.append(Step(s, reason_code, reason, fee, travel))
        ch.set.update(status=cur.value, updated_at=self.now)
        return ch

    def _visits_open(self) -> None:
        """Visit times may be declared and signed off until the agency confirms (the fee is fixed then)."""
        if self.status not in (S.SCHEDULED, S.VISITED, S.REPORTED):
            raise Rejected("conflict", "Visits are closed", f"Visit times cannot change while the dispatch is "
                           f"'{self.status}'.", current_status=self.status.value)

    def _visit(self, visits: list[dict], visit_id: str) -> dict:
        v = next((v for v in visits if v["visit_id"] == visit_id), None)
        if v is None:
            raise Rejected("not_found", "Not found", f"No visit {visit_id} on this dispatch.")
        return v

    # --- creation and screening -------------------------------------------------------------------------
    @staticmethod
    def request(doc: dict, *, actor: str, now: datetime) -> tuple[dict, Change]:
        """R-DSP-14: a new request; `doc` holds what was asked. The caller screens route A at once (same write)."""
        doc = {**doc, "version": 1, "created_at": now, "updated_at": now, "requested_by": actor,
               "fiscal_year": doc.get("fiscal_year") or fiscal.year_of(now.astimezone(JST)), "visits": [],
               "status": S.REQUESTED.value, "respond_by": business_days_after(now, RESPONSE_BUSINESS_DAYS),
               "history": [{"status": S.REQUESTED.value, "at": now, "actor": actor, "reason_code": None}]}
        return doc, Change(emits=[Step(S.REQUESTED)])

    def cosign(self, *, actor: str) -> Change:
        """R-DSP-02(c): the expert co-signs a direct request; screening follows in the same write."""
        if self.doc["route"] != "B":
            raise Rejected("conflict", "Nothing to co-sign", "Only direct (route B) requests are co-signed.")
        self._guard(S.ACCEPTED)
        return Change(set={"cosigned_at": self.now})

    def accept(self, *, reserve: ReserveBudget, exemption: str | None, actor: str, extra: dict | None = None) -> Change:
        """Screening passed (R-DSP-14): the free dispatch is held and the budget asked (saga step 1, R-DSP-08)."""
        ch = Change(set={**(extra or {}), "counts_free": True, "fee_exemption": exemption,
                         "reserve": {"command_id": reserve.command_id, "frame_id": reserve.frame_id,
                                     "member_id": reserve.member_id, "fee": reserve.fee, "travel": reserve.travel,
                                     "sent_at": self.now, "attempts": 1}})
        self._step(ch, S.ACCEPTED, actor=actor)
        ch.emits.append(reserve)
        return ch

    def refuse_screened(self, refusals: list[Refusal], *, actor: str, extra: dict | None = None) -> Change:
        """Screening failed: every reason, in words (R-DSP-06)."""
        code, reason = refusals[0].code, " ".join(r.message for r in refusals)
        ch = Change(set={**(extra or {}), "reason_code": code, "reason": reason,
                         "refusals": [r.__dict__ for r in refusals]})
        return self._step(ch, S.REFUSED, actor=actor, reason_code=code, reason=reason)

    def desk_refuse(self, reason: str, *, actor: str) -> Change:
        """R-DSP-06 (last ground): the desk finds the request unsuitable. A reservation still on its way is released
        when its answer arrives (`on_reserved`)."""
        self._guard(S.REFUSED)
        r = refusal("desk_discretion", reason)
        ch = Change(set={"reason_code": r.code, "reason": r.message, "refusals": [r.__dict__]},
                    gives_back_slot=True)
        return self._step(ch, S.REFUSED, actor=actor, reason_code=r.code, reason=r.message)

    # --- plan and visits (R-DSP-07, R-ANC-01, the fiscal-year rule) --------------------------------------
    def schedule(self, plan: tuple[PlannedVisit, ...] | None, prog: Programme, *, actor: str) -> Change:
        self._guard(S.SCHEDULED)
        ch = Change(set={"scheduled_by": actor})
        if plan is not None:
            problems = check_visit_caps(plan, prog) + fiscal.plan_problems([v.day for v in plan],
                                                                           self.doc["fiscal_year"], None)
            if problems:  # R-DSP-07 and the fiscal-year rule hold for the final plan too
                raise Rejected("invalid", "The plan breaks the programme's rules", " ".join(r.message for r in problems),
                               reasons=[r.__dict__ for r in problems])
            ch.set["planned_visits"] = plan_doc(plan)
        return self._step(ch, S.SCHEDULED, actor=actor)

    def check_in(self, *, visit_id: str, mode: str, location: dict, accompanied_by: list[str], prog: Programme,
                 actor: str) -> Change:
        if self.status not in (S.SCHEDULED, S.VISITED):
            raise Rejected("conflict", "Not scheduled", f"Visits are recorded once the dispatch is scheduled; it is "
                           f"'{self.status}'.", current_status=self.status.value)
        if why := fiscal.recorded_problem(self.now.astimezone(JST).date(), self.doc["fiscal_year"]):
            raise Rejected("conflict", "Outside the dispatch's fiscal year", why)
        visits = self.doc["visits"]
        if mode == ON_SITE and sum(1 for v in visits if v["mode"] == ON_SITE) >= prog.max_visits:
            raise Rejected("conflict", "No visit left", f"All {prog.max_visits} on-site visits of this application "
                           "have been recorded (R-DSP-07).")
        visit = {"visit_id": visit_id, "mode": mode, "check_in": {"at": self.now, "location": location},
                 "check_out": None, "declaration": None, "signed_off": None, "accompanied_by": accompanied_by}
        return Change(set={"visits": [*visits, visit], "updated_at": self.now}, action="dispatch.VisitCheckedIn")

    def check_out(self, *, visit_id: str, location: dict, actor: str) -> Change:
        visits = [dict(v) for v in self.doc["visits"]]
        v = self._visit(visits, visit_id)
        if v.get("check_out") or not v.get("check_in"):
            raise Rejected("conflict", "Already checked out", "This visit is already checked out.")
        v["check_out"] = {"at": self.now, "location": location}
        v["minutes"] = visit_minutes(v)
        ch = Change(set={"visits": visits})
        return self._step(ch, S.VISITED, actor=actor)

    def declare(self, *, visit_id: str | None, new_visit_id: str, start: datetime, end: datetime, mode: str,
                reason: str, signature: str, actor: str) -> tuple[str, Change]:
        """R-ANC-01: a signed declaration of a missing or corrected visit time; it needs a new sign-off."""
        self._visits_open()
        if end <= start:
            raise Rejected("invalid", "The request is not valid", "The declared end must be after the start.")
        if why := fiscal.recorded_problem(start.astimezone(JST).date(), self.doc["fiscal_year"]):
            raise Rejected("conflict", "Outside the dispatch's fiscal year", why)
        visits = [dict(v) for v in self.doc["visits"]]
        vid = visit_id or new_visit_id
        v = next((v for v in visits if v["visit_id"] == vid), None)
        if v is None:
            if visit_id:
                raise Rejected("not_found", "Not found", f"No visit {visit_id} on this dispatch.")
            v = {"visit_id": vid, "mode": mode, "check_in": None, "check_out": None, "signed_off": None,
                 "accompanied_by": []}
            visits.append(v)
        was_complete = visit_minutes(v) is not None
        v["declaration"] = {"start": start, "end": end, "reason": reason, "signature": signature,
                            "declared_by": actor, "declared_at": self.now}
        v["signed_off"] = None
        v["minutes"] = visit_minutes(v)
        ch = Change(set={"visits": visits, "updated_at": self.now}, action="dispatch.VisitTimeDeclared")
        if was_complete or self.status == S.REPORTED:  # a correction, or a visit missing from a filed report
            return vid, ch
        return vid, self._step(ch, S.VISITED, actor=actor)

    def sign_off(self, *, visit_id: str, agree: bool, comment: str, actor: str) -> Change:
        """R-ANC-01: the business signs off a visit (従事証明), or disputes it."""
        self._visits_open()
        visits = [dict(v) for v in self.doc["visits"]]
        v = self._visit(visits, visit_id)
        if visit_minutes(v) is None:
            raise Rejected("conflict", "Visit not finished", "The expert has not checked out of this visit yet.")
        if agree:
            v["signed_off"] = {"by": actor, "at": self.now, "comment": comment}
            v.pop("disputed", None)
        else:
            v["disputed"] = {"by": actor, "at": self.now, "comment": comment}
            v["signed_off"] = None
        return Change(set={"visits": visits, "updated_at": self.now}, action="dispatch.VisitSignedOff")

    # --- report, confirmation, payment (R-DSP-09, R-DSP-10/11, R-DSP-12) -----------------------------------
    def report(self, *, summary: str, proposals: str, follow_up: str, actor: str) -> Change:
        """R-DSP-09: the expert's report after the visits."""
        ch = Change(set={"report": {"summary": summary, "proposals": proposals, "follow_up": follow_up,
                                    "filed_at": self.now, "filed_by": actor}})
        return self._step(ch, S.REPORTED, actor=actor)

    def findings(self, prog: Programme) -> list:
        """What the agency must see before paying: unsigned or open visits, work beyond the R-DSP-07 caps, a route-A
        visit never accompanied (R-DSP-05)."""
        open_visits = sum(1 for v in self.doc.get("visits", []) if visit_minutes(v) is None)
        return findings(visit_times(self.doc), open_visits, prog) + accompaniment_findings(self.doc)

    def confirm(self, prog: Programme, *, exemption: str | None, travel: int | None, approve: list[str], note: str,
                actor: str, commit_id: str | None = None) -> Change:
        """The agency confirms: every finding approved by its code, the fee computed from signed-off time only and
        within the caps (R-DSP-07, R-DSP-10, R-ANC-01), the commit sent (saga step 4), the rating owed (R-DSP-12)."""
        self._guard(S.CONFIRMED)
        found = self.findings(prog)
        if unapproved := [f for f in found if f.code not in approve]:
            raise Rejected("conflict", "Findings to approve before payment", " ".join(f.message for f in unapproved)
                           + " Approve them by their codes (approve) to confirm anyway.",
                           findings=[f.__dict__ for f in unapproved])
        d = self.doc
        travel = travel if travel is not None else d.get("travel_estimate", 0)
        fee = compute_fee(visit_times(d), prog, travel=travel, exemption=exemption)
        command = CommitBudget(command_id=commit_id or new_id("commit"), frame_id=d["reserve"]["frame_id"],
                               dispatch_id=d["_id"], fee=fee.fee, travel=fee.travel)
        completed = DispatchCompleted(
            dispatch_id=d["_id"], fiscal_year=d["fiscal_year"], route=d["route"], business_id=d["business_id"],
            business_account_id=d["business_account_id"], expert_id=d["expert_id"],
            institution_id=d.get("institution_id"),
            institution_account_id=d["requested_by"] if d["route"] == "A" else None, completed_at=self.now)
        ch = Change(set={"fee": fee.fee, "travel": fee.travel, "paid_minutes": fee.paid_minutes, "fee_exemption": exemption,
                         "confirmation": {"by": actor, "at": self.now, "note": note,
                                          "approved_findings": [f.__dict__ for f in found]},
                         "commit": {"command_id": command.command_id, "fee": fee.fee, "travel": fee.travel,
                                    "sent_at": self.now, "attempts": 1}})
        self._step(ch, S.CONFIRMED, actor=actor, fee=fee.fee, travel=fee.travel)
        ch.emits += [command, completed]
        return ch

    def settle_shortfall(self, decision: str, note: str, *, actor: str) -> Change:
        """R-DSP-10, R-BUD-03: a fee the frame did not cover stays visible until the agency settles it."""
        if (self.doc.get("shortfall") or {}).get("status") != "open":
            raise Rejected("conflict", "No open shortfall", "This dispatch has no uncovered fee waiting for a decision.")
        return Change(set={"shortfall": {**self.doc["shortfall"], "status": decision, "decided_by": actor,
                                         "decided_at": self.now, "note": note}}, action="dispatch.ShortfallSettled")

    # --- cancellation and fraud (R-DSP-14, R-DSP-13) ------------------------------------------------------
    def cancel(self, reason: str, *, actor: str) -> Change:
        """R-DSP-14: cancel before confirmation; a held reservation is released (one still being answered is
        released when its answer arrives); before approval the free dispatch is given back (R-DSP-03)."""
        self._guard(S.CANCELLED)
        if self.doc.get("commit"):  # confirmed: the payment is on its way, the fraud procedure applies (R-DSP-13)
            raise InvalidTransition(self.status, S.CANCELLED)
        ch = Change(set={"cancel": {"by": actor, "at": self.now, "reason": reason, "from_status": self.status.value},
                         "reason_code": "cancelled", "reason": reason},
                    gives_back_slot=self.status in BEFORE_APPROVAL)
        self._step(ch, S.CANCELLED, actor=actor, reason_code="cancelled", reason=reason)
        if self.status in RESERVED_STATUSES:
            rel = ReleaseBudget(command_id=new_id("release"), frame_id=self.doc["reserve"]["frame_id"],
                                dispatch_id=self.doc["_id"], reason=reason)
            ch.set["release"] = {"command_id": rel.command_id, "sent_at": self.now}
            ch.emits.append(rel)
        return ch

    def fraud(self, reason: str, account_ids: list[str], *, actor: str) -> Change:
        """R-DSP-13: proven collusion or fraud: the fees paid are claimed back and the parties' forced exit asked
        (R-ID-06); a dispatch not yet confirmed is cancelled."""
        d = self.doc
        if d.get("fraud"):
            raise Rejected("conflict", "Already recorded", "Fraud is already recorded for this dispatch.")
        refund = (d.get("payment") or {}).get("spent", 0)
        accounts = sorted({a for a in [d.get("expert_account_id"), d.get("business_account_id"), *account_ids] if a})
        ch = Change()
        if can(self.status, S.CANCELLED) and not d.get("commit"):
            ch = self.cancel(f"fraud: {reason}", actor=actor)
        ch.set["fraud"] = {"by": actor, "at": self.now, "reason": reason, "account_ids": accounts,
                           "refund_claim": {"amount": refund, "status": "claimed" if refund else "none"}}
        ch.emits.append(FraudConfirmed(dispatch_id=d["_id"], account_ids=accounts, refund_claim=refund, reason=reason))
        return ch

    def settle_refund(self, decision: Literal["repaid", "written_off"], amount: int | None, note: str, *,
                      actor: str) -> Change:
        """R-DSP-13: a claimed refund ends `repaid` (credited back to the frame's ledger through budget) or
        `written_off`; nothing stays claimed silently."""
        claim = ((self.doc.get("fraud") or {}).get("refund_claim") or {})
        if claim.get("status") != "claimed":
            raise Rejected("conflict", "No refund claimed", "This dispatch has no refund claim waiting to be settled.")
        repaid = claim["amount"] if amount is None else amount
        if decision == "repaid" and not 0 < repaid <= claim["amount"]:
            raise Rejected("invalid", "Amount not possible", f"The amount repaid must be between 1 and the "
                           f"{claim['amount']} yen claimed.")
        repaid = repaid if decision == "repaid" else 0
        settled = {**claim, "status": decision, "repaid": repaid, "decided_by": actor, "decided_at": self.now,
                   "note": note}
        ch = Change(set={"fraud.refund_claim": settled})
        ch.emits.append(RefundSettled(dispatch_id=self.doc["_id"], decision=decision, amount=repaid,
                                      claimed=claim["amount"]))
        if repaid:
            credit = CreditRefund(command_id=f"refund-{self.doc['_id']}", frame_id=self.doc["reserve"]["frame_id"],
                                  dispatch_id=self.doc["_id"], amount=repaid)
            ch.set["fraud.refund_claim"]["credit"] = {"command_id": credit.command_id, "sent_at": self.now}
            ch.emits.append(credit)
        return ch

    # --- the expert's response and reassignment (R-EX-06) ---------------------------------------------------
    def responded(self) -> bool:
        return bool(self.doc.get("cosigned_at") if self.doc.get("route") == "B" else self.doc.get("expert_ack_at"))

    def response_overdue(self) -> bool:
        """The expert has not answered by the deadline: co-signed (route B) or acknowledged (route A)."""
        waiting = S.REQUESTED if self.doc.get("route") == "B" else S.APPROVED
        due = self.doc.get("respond_by")
        return self.status == waiting and due is not None and self.now > due and not self.responded()

    def acknowledge(self, *, actor: str) -> Change:
        """R-EX-06: the expert takes on an approved route-A dispatch."""
        if self.doc.get("route") != "A" or self.status not in (S.APPROVED, S.SCHEDULED):
            raise Rejected("conflict", "Nothing to acknowledge", "An approved dispatch requested by an institution is "
                           "acknowledged by its expert.", current_status=self.status.value)
        if self.doc.get("expert_ack_at"):
            raise Rejected("conflict", "Already acknowledged", "You acknowledged this dispatch already.")
        return Change(set={"expert_ack_at": self.now}, action="dispatch.ExpertAcknowledged")

    def reassign(self, *, expert_id: str, expert_account_id: str, reason: str, actor: str) -> Change:
        """R-EX-06: the desk gives an approved route-A dispatch whose expert did not answer to another expert, before
        any visit is planned; the reservation stays (the fee is estimated on the plan, not on the expert)."""
        d = self.doc
        if d.get("route") != "A" or self.status != S.APPROVED:
            raise Rejected("conflict", "Cannot reassign", "Only an approved dispatch requested by an institution, not yet "
                           "scheduled, is given to another expert.", current_status=self.status.value)
        if expert_id == d["expert_id"]:
            raise Rejected("invalid", "Same expert", "Name another expert.")
        entry = {"from": d["expert_id"], "to": expert_id, "by": actor, "at": self.now, "reason": reason}
        return Change(set={"expert_id": expert_id, "expert_account_id": expert_account_id, "expert_ack_at": None,
                           "respond_by": business_days_after(self.now, RESPONSE_BUSINESS_DAYS),
                           "reassignments": [*d.get("reassignments", []), entry], "response_alerted": False,
                           "updated_at": self.now},
                      action="dispatch.ExpertReassigned")

    # --- follow-up after route A (R-DSP-05) -----------------------------------------------------------------
    def follow_up(self, *, note: str, kind: str, actor: str) -> Change:
        """R-DSP-05: the requesting institution follows the business up for about three fiscal years after the
        dispatch; each contact is a record on the dispatch."""
        d = self.doc
        if d.get("route") != "A":
            raise Rejected("conflict", "No follow-up", "Follow-up records belong to dispatches requested through an "
                           "institution (route A).")
        if self.status not in (S.REPORTED, S.CONFIRMED, S.PAID):
            raise Rejected("conflict", "Not yet", "Follow-up starts once the expert has reported.",
                           current_status=self.status.value)
        until = d.get("follow_up_until_fiscal_year", d["fiscal_year"] + 3)
        if fiscal.year_of(self.now.astimezone(JST)) > until:
            raise Rejected("conflict", "Follow-up period over", f"The follow-up of this dispatch ran until the end of "
                           f"fiscal year {until}.")
        entry = {"at": self.now, "by": actor, "kind": kind, "note": note}
        return Change(set={"follow_ups": [*d.get("follow_ups", []), entry], "updated_at": self.now},
                      action="dispatch.FollowUpRecorded")

    def follow_up_reminder(self, params) -> Change | None:
        """R-DSP-05 on the clock: a follow-up period ended without a follow-up recorded → FollowUpDue, once per period
        (rule in domain.history; `params` a history.FollowUpParams)."""
        from contracts.events.history import FollowUpDue
        from dispatch_service.domain.history import follow_up_due, last_follow_up

        due = follow_up_due(self.doc, self.now, params)
        if due is None:
            return None
        period, due_at, until = due
        d = self.doc
        # the reminder itself reaches the requesting institution's people (R-NOT-03) in the same write
        notice = Notify(notification_id=f"follow-up-{d['_id']}-{period}", recipient_id=d["institution_id"],
                        recipient_kind="organisation", template="follow_up_due",
                        params={"dispatch_id": d["_id"], "business_id": d["business_id"], "period": str(period),
                                "due_at": due_at.date().isoformat(), "until": until.date().isoformat()})
        return Change(set={"follow_up_reminded": sorted({*d.get("follow_up_reminded", []), period})},
                      emits=[FollowUpDue(dispatch_id=d["_id"], business_id=d["business_id"],
                                         institution_id=d["institution_id"], period=period, due_at=due_at,
                                         follow_up_until=until, last_follow_up_at=last_follow_up(d)), notice])

    # --- the saga: budget answers (R-DSP-08) and the clock --------------------------------------------------
    def budget_retry(self, *, actor: str) -> Change:
        """The agency retries a dispatch whose budget command went unanswered: the same command again."""
        phase = waiting_for(self.doc)
        if self.status != S.BUDGET_UNANSWERED or phase is None:
            raise Rejected("conflict", "Nothing to retry", "Only a dispatch whose budget command went unanswered is "
                           "retried.", current_status=self.status.value)
        back = S.ACCEPTED if phase == "reserve" else S.CONFIRMED
        ch = self.resend(phase, 1)
        return self._step(ch, back, actor=actor)

    def command(self, phase: str) -> ReserveBudget | CommitBudget:
        """The very command sent before (same id: budget applies it once however often it arrives)."""
        r = self.doc["reserve"]
        if phase == "reserve":
            return ReserveBudget(command_id=r["command_id"], frame_id=r["frame_id"], dispatch_id=self.doc["_id"],
                                 member_id=r["member_id"], fee=r["fee"], travel=r["travel"])
        c = self.doc["commit"]
        return CommitBudget(command_id=c["command_id"], frame_id=r["frame_id"], dispatch_id=self.doc["_id"],
                            fee=c["fee"], travel=c["travel"])

    def resend(self, phase: str, attempts: int) -> Change:
        return Change(set={f"{phase}.sent_at": self.now, f"{phase}.attempts": attempts}, emits=[self.command(phase)])

    def on_clock(self, params: SagaParams, *, actor: str = "dispatch-saga") -> Change | None:
        """A command unanswered for too long is re-sent; after the last attempt the dispatch becomes visible as
        `budget_unanswered` (domain.saga)."""
        what = overdue(self.doc, self.now, params)
        if what is None:
            return None
        phase = waiting_for(self.doc)
        if what == "resend":
            return self.resend(phase, self.doc[phase].get("attempts", 1) + 1)
        ch = Change(set={"reason_code": S.BUDGET_UNANSWERED.value, "reason": UNANSWERED_REASON})
        return self._step(ch, S.BUDGET_UNANSWERED, actor=actor, reason_code=S.BUDGET_UNANSWERED.value,
                          reason=UNANSWERED_REASON)

    def on_reserved(self, e: BudgetReserved, event_id: str) -> Change | None:
        """Saga step 3: reserved then approved (screened before reserving); late answers too. A dispatch cancelled or
        refused meanwhile releases what was reserved (compensation)."""
        d = self.doc
        if (d.get("reserve") or {}).get("command_id") != e.command_id or d.get("reserved"):
            return None  # not the answer we wait for, or a duplicate
        held = {"amount": e.amount, "at": self.now, "event_id": event_id}
        if waiting_for(d) == "reserve":
            ch = Change(set={"reserved": held})
            if d.get("route") == "A":  # R-EX-06: the expert acknowledges the approved dispatch within the deadline
                ch.set["respond_by"] = business_days_after(self.now, RESPONSE_BUSINESS_DAYS)
            return self._step(ch, S.RESERVED, S.APPROVED, actor="budget")
        if self.status in (S.CANCELLED, S.REFUSED) and not d.get("release"):
            rel = ReleaseBudget(command_id=new_id("release"), frame_id=e.frame_id, dispatch_id=d["_id"],
                                reason="cancelled before the reservation was answered")
            return Change(set={"reserved": held, "release": {"command_id": rel.command_id, "sent_at": self.now}},
                          emits=[rel])
        return None

    def on_budget_refused(self, e: BudgetRefused) -> Change | None:
        if (self.doc.get("reserve") or {}).get("command_id") != e.command_id or waiting_for(self.doc) != "reserve":
            return None
        code = f"budget_{e.reason_code}"
        ch = Change(set={"reason_code": code, "reason": e.reason,
                         "refusals": [{"code": code, "rule": "R-DSP-08", "message": e.reason}]},
                    gives_back_slot=True)
        return self._step(ch, S.REFUSED, actor="budget", reason_code=code, reason=e.reason)

    def on_committed(self, e: BudgetCommitted, event_id: str) -> Change | None:
        """Saga step 5: paid. A fee above what the frame covered is an open shortfall the agency settles."""
        d = self.doc
        if (d.get("commit") or {}).get("command_id") != e.command_id or waiting_for(d) != "commit":
            return None
        ch = Change(set={"payment": {"spent": e.spent, "returned": e.returned, "uncovered": e.uncovered,
                                     "at": self.now, "command_id": e.command_id, "event_id": event_id}})
        code = reason = None
        if e.uncovered:  # never a silent shortfall (R-BUD-03, R-DSP-10)
            code, reason = "fee_above_reservation", (f"{e.uncovered} yen of the fee and travel were not covered by the "
                                                     "frame; the agency decides how they are settled.")
            ch.set["shortfall"] = {"amount": e.uncovered, "status": "open", "at": self.now}
        return self._step(ch, S.PAID, actor="budget", reason_code=code, reason=reason, fee=d.get("fee"),
                          travel=d.get("travel"))

    def on_released(self, e: BudgetReleased) -> Change | None:
        rel = self.doc.get("release") or {}
        if rel.get("command_id") != e.command_id or rel.get("confirmed_at"):
            return None
        return Change(set={"release.confirmed_at": self.now, "release.amount": e.amount},
                      action="dispatch.BudgetReleased")

    def on_refunded(self, e: BudgetRefunded) -> Change | None:
        credit = (((self.doc.get("fraud") or {}).get("refund_claim") or {}).get("credit") or {})
        if credit.get("command_id") != e.command_id or credit.get("credited_at"):
            return None
        return Change(set={"fraud.refund_claim.credit.credited_at": self.now,
                           "fraud.refund_claim.credit.amount": e.amount}, action="dispatch.RefundCredited")
