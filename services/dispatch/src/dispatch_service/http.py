"""HTTP handlers of the dispatch service: requests and their lifecycle, visits, reports, confirmation,
fraud, free-dispatch counts, web consultations (thin: authorise, call the domain, store with events)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from contracts.events.budget import CommitBudget, ReleaseBudget
from contracts.events.dispatch import DispatchCompleted, FraudConfirmed
from contracts.vocab import EXPERT_FIELDS, fiscal_year
from dispatch_service import saga, screening
from dispatch_service.domain import (BEFORE_APPROVAL, RESERVED_STATUSES, InvalidTransition, VisitTime, can,
                                     compute_fee, fee_exemption)
from dispatch_service.domain.eligibility import SUPPORT_KINDS, check_visit_caps, refusal
from dispatch_service.domain.programmes import programme_to_doc
from dispatch_service.domain.saga import UNANSWERED, waiting_for
from dispatch_service.domain.settlement import findings
from dispatch_service.domain.slots import gives_back
from dispatch_service.store import Store, new_id, now
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["dispatch"])
JST = ZoneInfo("Asia/Tokyo")
ANY_PARTY = ("institution", "business", "founder", "expert", "agency", "operator")


def store_of(request: Request) -> Store:
    return request.app.state.store


# --- models ---------------------------------------------------------------------------------------
class PlannedVisitIn(BaseModel):
    day: date
    hours: float = Field(gt=0, le=24)
    mode: Literal["onsite", "online"] = "onsite"


class Declarations(BaseModel):
    """R-DSP-06: facts the applicant declares (each one, if true, is a ground for refusal)."""

    advisory_contract: bool = Field(default=False, description="the expert has an advisory (顧問) contract with the business")
    solicited_by_expert: bool = Field(default=False, description="the expert asked the business to request them")
    dates_fixed_without_desk: bool = Field(default=False, description="dates were fixed with the expert without the desk")


class DispatchIn(BaseModel):
    """A dispatch request. Route A (institution staff) names the institution; route B (the business itself)
    needs a held web consultation, an earlier platform dispatch and the expert's co-signature (R-DSP-02)."""

    business_id: str | None = Field(default=None, min_length=1, max_length=100, description=(
        "route B: omit to use the business your account is bound to (R-ID-07); route A: the business that delegated "
        "'dispatch:request' to your institution (R-ID-08)"))
    expert_id: str = Field(min_length=1)
    institution_id: str | None = Field(default=None, description="route A: the requesting member institution")
    issue: str = Field(min_length=1, max_length=4000, description="the management issue, stated clearly (R-DSP-04)")
    issue_kind: Literal[EXPERT_FIELDS] | None = Field(default=None, description="field of the issue; business_succession / it_dx may allow more free dispatches")  # type: ignore[valid-type]
    beyond_self_help: bool = Field(description="the business cannot solve it by its own efforts (R-DSP-04)")
    needs_specialist: bool = Field(description="it needs advanced or specialised knowledge (R-DSP-04)")
    support_kinds: list[Literal[SUPPORT_KINDS]] = Field(default=["issue_solving"], min_length=1)  # type: ignore[valid-type]
    declarations: Declarations = Declarations()
    planned_visits: list[PlannedVisitIn] = Field(min_length=1, max_length=50)
    travel_estimate: int = Field(default=0, ge=0, le=100_000_000, description="estimated travel costs, yen (R-DSP-10)")
    accompanying_staff: list[str] = Field(default_factory=list, description="route A: staff accounts who accompany (R-DSP-05)")
    no_accompaniment_reason: str | None = None


class Location(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    place: str = ""


class CheckIn(BaseModel):
    mode: Literal["onsite", "online"] = "onsite"
    location: Location
    accompanied_by: list[str] = Field(default_factory=list, description="staff present (R-DSP-05)")


class CheckOut(BaseModel):
    location: Location


class DeclarationIn(BaseModel):
    """R-ANC-01: a missing or corrected time report, signed by the expert."""

    visit_id: str | None = Field(default=None, description="the visit corrected; omit to declare a missing visit")
    start: datetime
    end: datetime
    mode: Literal["onsite", "online"] = "onsite"
    reason: str = Field(min_length=5)
    signed: bool = Field(description="the expert signs the declaration as true")
    signature: str = Field(min_length=1, description="the expert's name as signed")


class SignOff(BaseModel):
    agree: bool = True
    comment: str = ""


class ScheduleIn(BaseModel):
    planned_visits: list[PlannedVisitIn] | None = Field(default=None, description="the final plan; omit to keep it")


class ReportIn(BaseModel):
    """R-DSP-09: the expert's report after the visits."""

    summary: str = Field(min_length=10)
    proposals: str = ""
    follow_up: str = ""


class ConfirmIn(BaseModel):
    travel: int | None = Field(default=None, ge=0, le=100_000_000, description="actual travel costs, yen; default: the estimate")
    note: str = ""
    approve: list[str] = Field(default_factory=list, max_length=10, description=(
        "codes of the findings (unsigned visits, work beyond the R-DSP-07 caps) the agency approves; without them "
        "confirmation is refused and the findings are listed"))


class CancelIn(BaseModel):
    reason: str = Field(min_length=3)


class FraudIn(BaseModel):
    reason: str = Field(min_length=5)
    account_ids: list[str] = Field(default_factory=list, description="accounts besides the expert and business")


class ConsultationIn(BaseModel):
    business_id: str | None = Field(default=None, min_length=1, max_length=100,
                                    description="omit to use the business your account is bound to (R-ID-07)")
    expert_id: str
    subject: str = Field(min_length=3, max_length=300)
    message: str = Field(min_length=1, max_length=4000)


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


# --- access -------------------------------------------------------------------------------------------
def org_ids(p: Principal) -> set[str]:
    return {o.get("org_id") for o in p.orgs}


def is_agency(p: Principal) -> bool:
    return bool(p.roles & {"agency", "operator"})


def own_business(p: Principal, asked: str | None) -> str:
    """R-ID-07: the business a business account acts for comes from its token, never from what it types."""
    if asked is not None:
        must(p.acts_for(asked), f"You do not act for business {asked}.")
        return asked
    if len(p.businesses) == 1:
        return next(iter(p.businesses))
    if not p.businesses:
        raise Problem(403, "No business", "Your account is not bound to a business yet: register it at the portal "
                      "(a corporation first enters the code from the letter sent to its head office).")
    raise Problem(422, "Which business?", f"You act for several businesses ({', '.join(sorted(p.businesses))}): "
                  "name business_id.")


def party(p: Principal, doc: dict) -> set[str]:
    """Which parties of the dispatch the caller is."""
    out = set()
    if "institution" in p.roles and (doc.get("institution_id") in org_ids(p)
                                     or p.delegation(doc.get("business_id"), "dispatch:read")):
        out.add("institution")
    if p.acts_for(doc.get("business_id")):  # its prime or a member account (R-ID-07); never by a typed-in id
        out.add("business")
    if p.subject == doc.get("expert_account_id"):
        out.add("expert")
    if is_agency(p):
        out.add("agency")
    return out


async def load(request: Request, dispatch_id: str, p: Principal) -> dict:
    doc = await store_of(request).get(dispatch_id)
    if doc is None or not party(p, doc):
        raise Problem(404, "Not found", f"No dispatch request {dispatch_id} visible to you.")
    return doc


def must(ok: bool, detail: str) -> None:
    if not ok:
        raise Problem(403, "Forbidden", detail)


def step_or_409(doc: dict, wanted: str) -> None:
    if not can(doc["status"], wanted):
        raise InvalidTransition(doc["status"], wanted)


def public(doc: dict) -> dict:
    return {"dispatch_id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "_outbox", "_seen")}}


# --- requests -----------------------------------------------------------------------------------------
@router.post("/requests", status_code=201, summary="Request an expert dispatch (route A: institution, route B: business)")
async def create_request(body: DispatchIn, request: Request,
                         p: Principal = Depends(require("institution", "business", "founder"))) -> dict:
    store = store_of(request)
    did = new_id("dsp")
    doc = {"_id": did, "version": 1, "created_at": now(), "updated_at": now(), "requested_by": p.subject,
           "fiscal_year": fiscal_year(datetime.now(JST).date()), "business_id": body.business_id,
           "expert_id": body.expert_id, "issue": body.issue.strip(), "issue_kind": body.issue_kind,
           "beyond_self_help": body.beyond_self_help, "needs_specialist": body.needs_specialist,
           "support_kinds": list(body.support_kinds), "declarations": body.declarations.model_dump(),
           "planned_visits": [{"day": v.day.isoformat(), "hours": v.hours, "mode": v.mode} for v in body.planned_visits],
           "travel_estimate": body.travel_estimate, "visits": [], "status": "requested",
           "history": [{"status": "requested", "at": now(), "actor": p.subject, "reason_code": None}]}
    if body.institution_id:  # route A (R-DSP-01)
        must("institution" in p.roles, "Only staff of a support institution may request for an institution.")
        entry = next((o for o in p.orgs if o.get("org_id") == body.institution_id), None)
        must(entry is not None, f"You do not act for institution {body.institution_id}.")
        if not body.business_id:
            raise Problem(422, "Which business?", "Name the business (business_id) that asked your institution to "
                          "request for it.")
        # R-ID-08: an institution files for a business only under the business's recorded delegation
        must(p.delegation(body.business_id, "dispatch:request") is not None,
             f"Business {body.business_id} has not delegated 'dispatch:request' to your institution; it can grant "
             "that at the portal (delegations).")
        people = await store.db.business_people.find_one({"_id": body.business_id}) or {}
        if not people.get("prime"):
            raise Problem(422, "The business has no portal account", f"Business {body.business_id} has no proven "
                          "prime account yet; it signs off the visits and rates the expert, so it registers first.")
        staff = body.accompanying_staff or ([] if body.no_accompaniment_reason else [p.subject])
        doc.update(route="A", institution_id=body.institution_id, platform_id=entry.get("platform_id"),
                   business_account_id=people["prime"],
                   # R-DSP-05: staff accompany in principle and follow the business up for about 3 years.
                   accompanying_staff=staff, no_accompaniment_reason=body.no_accompaniment_reason,
                   follow_up_until_fiscal_year=doc["fiscal_year"] + 3)
        rights = frozenset(entry.get("rights", ()))
        changes, events, _ = await screening.decide(store, doc, token_rights=rights, actor=p.subject)
        doc.update(changes)
        requested = store.status_event(doc, "requested", actor=p.subject)
        doc["history"].append({"status": doc["status"], "at": now(), "actor": p.subject,
                               "reason_code": doc.get("reason_code")})
        try:  # the request, its screening events and the ReserveBudget command: ONE write
            await store.svc.insert(store.dispatches, doc, events=[requested, *events])
        except Exception:
            await store.release_slot(doc["business_id"], doc["fiscal_year"], did)
            raise
        return public(await store.get(did))
    # route B (R-DSP-02): stored as requested; screened once the expert co-signs.
    must(bool(p.roles & {"business", "founder"}), "A direct request is made by the business itself.")
    doc["business_id"] = own_business(p, body.business_id)
    doc.update(route="B", institution_id=None, platform_id=None, business_account_id=p.subject)
    expert_doc, _ = await store.expert(body.expert_id)
    if expert_doc is None:
        raise Problem(422, "Unknown expert", f"Expert {body.expert_id} is not known to the dispatch service.")
    doc["expert_account_id"] = expert_doc["account_id"]
    await store.svc.insert(store.dispatches, doc, events=[store.status_event(doc, "requested", actor=p.subject)])
    return public(await store.get(did))


@router.post("/requests/{dispatch_id}/cosign", summary="The expert co-signs a direct request (R-DSP-02c); it is then screened")
async def cosign(dispatch_id: str, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    must("expert" in party(p, doc), "Only the requested expert may co-sign.")
    if doc["route"] != "B":
        raise Problem(409, "Nothing to co-sign", "Only direct (route B) requests are co-signed.")

    async def decide(d: dict):
        step_or_409(d, "accepted")
        d = {**d, "cosigned_at": now()}
        changes, events, _ = await screening.decide(store, d, actor=p.subject)
        upd = Store.step(d, changes["status"], actor=p.subject, reason_code=changes.get("reason_code"))
        upd["$set"].update({k: v for k, v in changes.items() if k != "status"}, cosigned_at=d["cosigned_at"])
        return upd, events

    try:
        return public(await store.mutate(dispatch_id, decide, actor=p.subject))
    except Exception:
        cur = await store.get(dispatch_id)
        if cur is not None and cur["status"] == "requested":  # screening's slot claim was not written
            await store.release_slot(doc["business_id"], doc["fiscal_year"], dispatch_id)
        raise


@router.get("/requests/{dispatch_id}", summary="A dispatch request, its status, visits, report and payment")
async def get_request(dispatch_id: str, request: Request, p: Principal = Depends(require(*ANY_PARTY))) -> dict:
    return public(await load(request, dispatch_id, p))


@router.post("/requests/{dispatch_id}/schedule", summary="Fix the visit plan of an approved dispatch (the desk, not the expert: R-DSP-06)")
async def schedule(dispatch_id: str, body: ScheduleIn, request: Request,
                   p: Principal = Depends(require("institution", "agency", "operator"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    must(bool(party(p, doc) & {"institution", "agency"}), "Only the requesting institution or the agency schedules.")
    prog = await store.programme(doc["fiscal_year"])
    changes: dict = {}
    if body.planned_visits is not None:
        plan = tuple(screening.PlannedVisit(v.day, v.hours, v.mode) for v in body.planned_visits)
        if refusals := check_visit_caps(plan, prog):  # R-DSP-07 holds for the final plan too
            raise Problem(422, "Plan exceeds the programme's caps", " ".join(r.message for r in refusals),
                          reasons=[r.__dict__ for r in refusals])
        changes["planned_visits"] = [{"day": v.day.isoformat(), "hours": v.hours, "mode": v.mode} for v in plan]

    def decide(d: dict):
        step_or_409(d, "scheduled")
        upd = Store.step(d, "scheduled", actor=p.subject)
        upd["$set"].update(changes, scheduled_by=p.subject)
        return upd, [store.status_event(d, "scheduled", actor=p.subject)]

    return public(await store.mutate(dispatch_id, decide, actor=p.subject))


# --- visits (R-ANC-01) ------------------------------------------------------------------------------
def _minutes(v: dict) -> int | None:
    if v.get("declaration"):
        s, e = v["declaration"]["start"], v["declaration"]["end"]
    elif v.get("check_in") and v.get("check_out"):
        s, e = v["check_in"]["at"], v["check_out"]["at"]
    else:
        return None
    return max(0, int((e - s).total_seconds() // 60))


def _visit_day(v: dict) -> date:
    start = v["declaration"]["start"] if v.get("declaration") else v["check_in"]["at"]
    return start.astimezone(JST).date()


def _visits_open(d: dict) -> None:
    """Visit times may be declared and signed off until the agency confirms (the fee is fixed then)."""
    if d["status"] not in ("scheduled", "visited", "reported"):
        raise Problem(409, "Visits are closed", f"Visit times cannot change while the dispatch is '{d['status']}'.",
                      current_status=d["status"])


def _expert_on(doc: dict, p: Principal) -> None:
    must("expert" in party(p, doc), "Only the dispatched expert records visits.")


@router.post("/requests/{dispatch_id}/visits", status_code=201, summary="The expert checks in to a visit (time and location)")
async def check_in(dispatch_id: str, body: CheckIn, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    _expert_on(doc, p)
    vid = new_id("visit")
    prog = await store.programme(doc["fiscal_year"])

    def decide(d: dict):
        if d["status"] not in ("scheduled", "visited"):
            raise Problem(409, "Not scheduled", f"Visits are recorded once the dispatch is scheduled; it is '{d['status']}'.")
        if body.mode == "onsite" and sum(1 for v in d["visits"] if v["mode"] == "onsite") >= prog.max_visits:
            raise Problem(409, "No visit left", "All planned visits of this application have been recorded (R-DSP-07).")
        visit = {"visit_id": vid, "mode": body.mode, "check_in": {"at": now(), "location": body.location.model_dump()},
                 "check_out": None, "declaration": None, "signed_off": None, "accompanied_by": body.accompanied_by}
        return {"$push": {"visits": visit}, "$set": {"updated_at": now()}}, []

    doc = await store.mutate(dispatch_id, decide, actor=p.subject, action="dispatch.VisitCheckedIn")
    return {"visit_id": vid, **public(doc)}


@router.post("/requests/{dispatch_id}/visits/{visit_id}/check-out", summary="The expert checks out of a visit")
async def check_out(dispatch_id: str, visit_id: str, body: CheckOut, request: Request,
                    p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    _expert_on(doc, p)

    def decide(d: dict):
        visits = [dict(v) for v in d["visits"]]
        v = next((v for v in visits if v["visit_id"] == visit_id), None)
        if v is None:
            raise Problem(404, "Not found", f"No visit {visit_id} on this dispatch.")
        if v.get("check_out"):
            raise Problem(409, "Already checked out", "This visit is already checked out.")
        v["check_out"] = {"at": now(), "location": body.location.model_dump()}
        v["minutes"] = _minutes(v)
        upd = Store.step(d, "visited", actor=p.subject)
        upd["$set"]["visits"] = visits
        return upd, [store.status_event(d, "visited", actor=p.subject)]

    return public(await store.mutate(dispatch_id, decide, actor=p.subject))


@router.post("/requests/{dispatch_id}/visits/declarations", status_code=201,
             summary="A signed declaration for a missing or corrected visit time (R-ANC-01)")
async def declare(dispatch_id: str, body: DeclarationIn, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    _expert_on(doc, p)
    if not body.signed:
        raise Problem(422, "Declaration not signed", "A missing or corrected time report must be signed by the expert.")
    if body.end <= body.start:
        raise Problem(422, "The request is not valid", "The declared end must be after the start.")
    declaration = {"start": body.start, "end": body.end, "reason": body.reason, "signature": body.signature,
                   "declared_by": p.subject, "declared_at": now()}
    vid = body.visit_id or new_id("visit")

    def decide(d: dict):
        _visits_open(d)
        visits = [dict(v) for v in d["visits"]]
        v = next((v for v in visits if v["visit_id"] == vid), None)
        if v is None:
            if body.visit_id:
                raise Problem(404, "Not found", f"No visit {body.visit_id} on this dispatch.")
            v = {"visit_id": vid, "mode": body.mode, "check_in": None, "check_out": None, "signed_off": None,
                 "accompanied_by": []}
            visits.append(v)
        was_complete = _minutes(v) is not None
        v["declaration"], v["signed_off"] = declaration, None  # a corrected time needs a new sign-off
        v["minutes"] = _minutes(v)
        if was_complete or d["status"] == "reported":  # a correction, or a visit missing from a filed report
            return {"$set": {"visits": visits, "updated_at": now()}}, []
        upd = Store.step(d, "visited", actor=p.subject)
        upd["$set"]["visits"] = visits
        return upd, [store.status_event(d, "visited", actor=p.subject)]

    doc = await store.mutate(dispatch_id, decide, actor=p.subject, action="dispatch.VisitTimeDeclared")
    return {"visit_id": vid, **public(doc)}


@router.post("/requests/{dispatch_id}/visits/{visit_id}/sign-off", summary="The business signs off a visit (従事証明, R-ANC-01)")
async def sign_off(dispatch_id: str, visit_id: str, body: SignOff, request: Request,
                   p: Principal = Depends(require("business", "founder"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    must("business" in party(p, doc), "Only the business that received the dispatch signs off its visits.")

    def decide(d: dict):
        _visits_open(d)
        visits = [dict(v) for v in d["visits"]]
        v = next((v for v in visits if v["visit_id"] == visit_id), None)
        if v is None:
            raise Problem(404, "Not found", f"No visit {visit_id} on this dispatch.")
        if _minutes(v) is None:
            raise Problem(409, "Visit not finished", "The expert has not checked out of this visit yet.")
        if not body.agree:
            v["disputed"] = {"by": p.subject, "at": now(), "comment": body.comment}
            v["signed_off"] = None
        else:
            v["signed_off"] = {"by": p.subject, "at": now(), "comment": body.comment}
        return {"$set": {"visits": visits, "updated_at": now()}}, []

    return public(await store.mutate(dispatch_id, decide, actor=p.subject, action="dispatch.VisitSignedOff"))


# --- report, confirmation, payment (R-DSP-09, R-DSP-10/11) ---------------------------------------
@router.post("/requests/{dispatch_id}/report", summary="The expert files the report (R-DSP-09)")
async def report(dispatch_id: str, body: ReportIn, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    _expert_on(doc, p)

    def decide(d: dict):
        step_or_409(d, "reported")
        upd = Store.step(d, "reported", actor=p.subject)
        upd["$set"]["report"] = {**body.model_dump(), "filed_at": now(), "filed_by": p.subject}
        return upd, [store.status_event(d, "reported", actor=p.subject)]

    return public(await store.mutate(dispatch_id, decide, actor=p.subject))


def verified_visits(doc: dict) -> list[VisitTime]:
    """R-ANC-01: a visit counts when its time is known (checked in and out, or declared) and the business
    signed it off."""
    out = []
    for v in doc["visits"]:
        minutes = _minutes(v)
        if minutes is not None:
            out.append(VisitTime(_visit_day(v), minutes, v["mode"], verified=bool(v.get("signed_off"))))
    return out


@router.post("/requests/{dispatch_id}/confirm", summary="The agency confirms the report; the fee is computed and committed")
async def confirm(dispatch_id: str, body: ConfirmIn, request: Request,
                  p: Principal = Depends(require("agency", "operator"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    prog = await store.programme(doc["fiscal_year"])
    expert_doc, _ = await store.expert(doc["expert_id"])
    expert_doc = expert_doc or {}

    def decide(d: dict):
        step_or_409(d, "confirmed")
        visits = verified_visits(d)
        found = findings(visits, sum(1 for v in d["visits"] if _minutes(v) is None), prog)
        if unapproved := [f for f in found if f.code not in body.approve]:
            raise Problem(409, "Findings to approve before payment", " ".join(f.message for f in unapproved) +
                          " Approve them by their codes (approve) to confirm anyway.",
                          findings=[f.__dict__ for f in unapproved])
        exemption = fee_exemption(expert_employer_id=expert_doc.get("employer_org_id"),
                                  requesting_institution_id=d.get("institution_id"),
                                  personnel_cost_subsidised=bool(expert_doc.get("personnel_cost_subsidised")))
        travel = body.travel if body.travel is not None else d.get("travel_estimate", 0)
        fee = compute_fee(visits, prog, travel=travel, exemption=exemption)
        command = CommitBudget(command_id=new_id("commit"), frame_id=d["reserve"]["frame_id"], dispatch_id=d["_id"],
                               fee=fee.fee, travel=fee.travel)
        completed = DispatchCompleted(
            dispatch_id=d["_id"], fiscal_year=d["fiscal_year"], route=d["route"], business_id=d["business_id"],
            business_account_id=d["business_account_id"], expert_id=d["expert_id"],
            institution_id=d.get("institution_id"),
            institution_account_id=d["requested_by"] if d["route"] == "A" else None, completed_at=now())
        upd = Store.step(d, "confirmed", actor=p.subject)
        upd["$set"].update(fee=fee.fee, travel=fee.travel, paid_minutes=fee.paid_minutes, fee_exemption=exemption,
                           confirmation={"by": p.subject, "at": now(), "note": body.note,
                                         "approved_findings": [f.__dict__ for f in found]},
                           commit={"command_id": command.command_id, "fee": fee.fee, "travel": fee.travel,
                                   "sent_at": now(), "attempts": 1})
        return upd, [store.status_event(d, "confirmed", actor=p.subject, fee=fee.fee, travel=fee.travel),
                     store.svc.event(command, actor=p.subject), store.svc.event(completed, actor=p.subject)]

    done = await store.mutate(dispatch_id, decide, actor=p.subject)
    # R-DSP-12 without a race: the block starts now, not when ratings' RatingOwed arrives a moment later
    await store.rating_owed(done)
    return public(done)


@router.post("/requests/{dispatch_id}/budget-retry",
             summary="The agency retries a dispatch whose budget command went unanswered (R-DSP-08, R-DSP-14)")
async def budget_retry(dispatch_id: str, request: Request, p: Principal = Depends(require("agency", "operator"))) -> dict:
    store = store_of(request)
    await load(request, dispatch_id, p)

    def decide(d: dict):
        phase = waiting_for(d)
        if d["status"] != UNANSWERED or phase is None:
            raise Problem(409, "Nothing to retry", "Only a dispatch whose budget command went unanswered is retried.",
                          current_status=d["status"])
        back = "accepted" if phase == "reserve" else "confirmed"
        upd, events = saga.resend(store, d, phase, 1, p.subject)
        step = Store.step(d, back, actor=p.subject)
        upd["$set"].update(step["$set"])
        upd["$push"] = step["$push"]
        return upd, [store.status_event(d, back, actor=p.subject), *events]

    return public(await store.mutate(dispatch_id, decide, actor=p.subject))


class ShortfallIn(BaseModel):
    decision: Literal["topped_up", "written_off"] = Field(description="topped_up: paid from another source (say which "
                                                          "in the note); written_off: the expert is not paid the rest")
    note: str = Field(min_length=3, max_length=1000)


@router.post("/requests/{dispatch_id}/shortfall", summary="The agency settles a fee the frame did not cover (visible "
             "until settled; R-DSP-10, R-BUD-03)")
async def settle_shortfall(dispatch_id: str, body: ShortfallIn, request: Request,
                           p: Principal = Depends(require("agency", "operator"))) -> dict:
    store = store_of(request)
    await load(request, dispatch_id, p)

    def decide(d: dict):
        if (d.get("shortfall") or {}).get("status") != "open":
            raise Problem(409, "No open shortfall", "This dispatch has no uncovered fee waiting for a decision.")
        return {"$set": {"shortfall": {**d["shortfall"], "status": body.decision, "decided_by": p.subject,
                                       "decided_at": now(), "note": body.note}}}, []

    return public(await store.mutate(dispatch_id, decide, actor=p.subject, action="dispatch.ShortfallSettled"))


# --- cancellation and fraud (R-DSP-14, R-DSP-13) -------------------------------------------------------
def cancel_update(store: Store, d: dict, reason: str, actor: str, cause=None) -> tuple[dict, list]:
    """R-DSP-14: cancel; a held reservation is released. A reservation still being answered is released
    when its answer arrives (see consumers). Before approval the free dispatch is given back (R-DSP-03)."""
    step_or_409(d, "cancelled")
    if d.get("commit"):  # confirmed, the payment is on its way: the fraud procedure applies instead (R-DSP-13)
        raise InvalidTransition(d["status"], "cancelled")
    upd = Store.step(d, "cancelled", actor=actor, reason_code="cancelled")
    upd["$set"].update(cancel={"by": actor, "at": now(), "reason": reason, "from_status": d["status"]},
                       reason_code="cancelled", reason=reason)
    events = [store.status_event(d, "cancelled", actor=actor, cause=cause, reason_code="cancelled", reason=reason)]
    if d["status"] in RESERVED_STATUSES:
        rel = ReleaseBudget(command_id=new_id("release"), frame_id=d["reserve"]["frame_id"], dispatch_id=d["_id"],
                            reason=reason)
        upd["$set"]["release"] = {"command_id": rel.command_id, "sent_at": now()}
        events.append(store.svc.event(rel, actor=actor, cause=cause))
    if d["status"] in BEFORE_APPROVAL:
        upd["$set"].update(gives_back())
    return upd, events


@router.post("/requests/{dispatch_id}/cancel", summary="Cancel a dispatch before it is confirmed; the budget is released")
async def cancel(dispatch_id: str, body: CancelIn, request: Request, p: Principal = Depends(require(*ANY_PARTY))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    must(bool(party(p, doc) & {"institution", "business", "agency"}),
         "Only the requester, the business or the agency may cancel.")
    doc = await store.mutate(dispatch_id, lambda d: cancel_update(store, d, body.reason, p.subject), actor=p.subject)
    if doc["cancel"]["from_status"] in BEFORE_APPROVAL:
        await store.release_slot(doc["business_id"], doc["fiscal_year"], dispatch_id)
    return public(doc)


class RefuseIn(BaseModel):
    reason: str = Field(min_length=5, description="why the desk finds the request unsuitable, for the applicant")


@router.post("/requests/{dispatch_id}/refuse", summary="The agency refuses a request it finds unsuitable (R-DSP-06, last ground)")
async def refuse(dispatch_id: str, body: RefuseIn, request: Request, p: Principal = Depends(require("agency"))) -> dict:
    store = store_of(request)
    await load(request, dispatch_id, p)

    def decide(d: dict):
        step_or_409(d, "refused")
        r = refusal("desk_discretion", body.reason)
        upd = Store.step(d, "refused", actor=p.subject, reason_code=r.code)
        upd["$set"].update(reason_code=r.code, reason=r.message, refusals=[r.__dict__], **gives_back())
        # A reservation still on its way is released when its answer arrives (see consumers).
        return upd, [store.status_event(d, "refused", actor=p.subject, reason_code=r.code, reason=r.message)]

    doc = await store.mutate(dispatch_id, decide, actor=p.subject)
    await store.release_slot(doc["business_id"], doc["fiscal_year"], dispatch_id)
    return public(doc)


@router.post("/requests/{dispatch_id}/fraud", summary="The agency records proven collusion or fraud (R-DSP-13)")
async def fraud(dispatch_id: str, body: FraudIn, request: Request, p: Principal = Depends(require("agency"))) -> dict:
    store = store_of(request)
    await load(request, dispatch_id, p)

    def decide(d: dict):
        if d.get("fraud"):
            raise Problem(409, "Already recorded", "Fraud is already recorded for this dispatch.")
        refund = (d.get("payment") or {}).get("spent", 0)  # fees (and travel) actually paid are claimed back
        accounts = sorted({a for a in [d.get("expert_account_id"), d.get("business_account_id"), *body.account_ids] if a})
        msg = FraudConfirmed(dispatch_id=d["_id"], account_ids=accounts, refund_claim=refund, reason=body.reason)
        upd, events = ({"$set": {}}, [])
        if can(d["status"], "cancelled") and not d.get("commit"):
            upd, events = cancel_update(store, d, f"fraud: {body.reason}", p.subject)
        upd.setdefault("$set", {})["fraud"] = {"by": p.subject, "at": now(), "reason": body.reason,
                                               "refund_claim": {"amount": refund, "status": "claimed"},
                                               "account_ids": accounts}
        return upd, [*events, store.svc.event(msg, actor=p.subject)]

    doc = await store.mutate(dispatch_id, decide, actor=p.subject)
    if (doc.get("cancel") or {}).get("from_status") in BEFORE_APPROVAL:
        await store.release_slot(doc["business_id"], doc["fiscal_year"], dispatch_id)
    return public(doc)


# --- free dispatches (R-DSP-03) and programmes -------------------------------------------------------
@router.get("/businesses/{business_id}/free-dispatches", summary="Free dispatches used and remaining this fiscal year (R-DSP-03)")
async def free_dispatches(business_id: str, request: Request, fy: int | None = Query(default=None, alias="fiscal_year", ge=2000, le=2100),
                          p: Principal = Depends(require("business", "founder", "institution", "agency", "operator"))) -> dict:
    store = store_of(request)
    # per-business data: the business itself, an institution it delegated to, the agency and operators (R-ID-07/08)
    if not (p.is_staff or p.may(business_id, "dispatch:read")):
        raise Problem(404, "Not found", f"No business {business_id} visible to you.")
    year = fy or fiscal_year(datetime.now(JST).date())
    prog = await store.programme(year)
    used = await store.used_free(business_id, year)
    return {"business_id": business_id, "fiscal_year": year, "used": len(used), "dispatch_ids": used,
            "cap": prog.free_dispatches, "remaining": max(0, prog.free_dispatches - len(used)),
            "cap_extended": prog.free_dispatches_extended,
            "remaining_extended": max(0, prog.free_dispatches_extended - len(used)),
            "extended_issue_kinds": sorted(prog.extended_issue_kinds)}


@router.get("/programmes/{fiscal_year}", summary="The dispatch programme of a fiscal year: caps, fee rules")
async def get_programme(request: Request, fiscal_year: int = Path(ge=2000, le=2100), _: Principal = Depends(require(*ANY_PARTY, "bureau"))) -> dict:
    return programme_to_doc(await store_of(request).programme(fiscal_year))


# --- web consultations (R-DSP-02b, R-DSP-11) --------------------------------------------------------
async def load_consultation(request: Request, cid: str, p: Principal) -> dict:
    doc = await store_of(request).db.consultations.find_one({"_id": cid})
    if doc is None or not (p.acts_for(doc["business_id"]) or p.subject == doc["expert_account_id"] or is_agency(p)):
        raise Problem(404, "Not found", f"No consultation {cid} visible to you.")
    return doc


def consultation_out(doc: dict) -> dict:
    return {"consultation_id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}


@router.post("/consultations", status_code=201, tags=["consultations"], summary="A business opens a web consultation with an expert (free of charge)")
async def open_consultation(body: ConsultationIn, request: Request, p: Principal = Depends(require("business", "founder"))) -> dict:
    store = store_of(request)
    expert_doc, _ = await store.expert(body.expert_id)
    if expert_doc is None:
        raise Problem(422, "Unknown expert", f"Expert {body.expert_id} is not known to the dispatch service.")
    business_id = own_business(p, body.business_id)
    doc = {"_id": new_id("cons"), "business_id": business_id, "business_account_id": p.subject,
           "expert_id": body.expert_id, "expert_account_id": expert_doc["account_id"], "subject": body.subject,
           "messages": [{"from": p.subject, "at": now(), "text": body.message}], "held": False, "created_at": now()}
    await store.db.consultations.insert_one(doc)
    await store.audit(p.subject, "dispatch.ConsultationOpened", doc["_id"], {"business_id": business_id,
                                                                            "expert_id": body.expert_id})
    return consultation_out(doc)


@router.get("/consultations/{consultation_id}", tags=["consultations"], summary="A web consultation thread")
async def get_consultation(consultation_id: str, request: Request, p: Principal = Depends(require(*ANY_PARTY))) -> dict:
    return consultation_out(await load_consultation(request, consultation_id, p))


@router.post("/consultations/{consultation_id}/messages", tags=["consultations"], summary="Post a message to a consultation")
async def post_message(consultation_id: str, body: MessageIn, request: Request,
                       p: Principal = Depends(require("business", "founder", "expert"))) -> dict:
    store = store_of(request)
    await load_consultation(request, consultation_id, p)
    async with store.lock(consultation_id):  # see store.AggregateLocks
        await store.db.consultations.update_one({"_id": consultation_id},
                                                {"$push": {"messages": {"from": p.subject, "at": now(), "text": body.text}}})
    await store.audit(p.subject, "dispatch.ConsultationMessage", consultation_id, {})
    return consultation_out(await store.db.consultations.find_one({"_id": consultation_id}))


@router.post("/consultations/{consultation_id}/held", tags=["consultations"],
             summary="The expert marks the consultation held: the issue and the expert needed are clear (R-DSP-02b)")
async def mark_held(consultation_id: str, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load_consultation(request, consultation_id, p)
    must(p.subject == doc["expert_account_id"], "Only the consulted expert marks the consultation held.")
    async with store.lock(consultation_id):
        await store.db.consultations.update_one({"_id": consultation_id}, {"$set": {"held": True, "held_at": now()}})
    await store.audit(p.subject, "dispatch.ConsultationHeld", consultation_id, {})
    return consultation_out(await store.db.consultations.find_one({"_id": consultation_id}))
