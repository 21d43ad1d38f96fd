"""Use case: request a dispatch (route A by an institution, route B by the business), read it, the desk's refusal,
cancellation, and what a business has used of its free dispatches (R-DSP-01..04, R-DSP-06, R-DSP-14, R-ID-07/08)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from contracts.vocab import EXPERT_FIELDS, fiscal_year
from dispatch_service import screening
from dispatch_service.access import ANY_PARTY, clock, load, must, public, store_of
from dispatch_service.domain.dispatch import JST, Dispatch, plan_doc
from dispatch_service.domain.eligibility import SUPPORT_KINDS
from dispatch_service.domain.programmes import programme_to_doc
from dispatch_service.store import new_id
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["dispatch"])


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
    planned_visits: list[PlannedVisitIn] = Field(min_length=1, max_length=50, description=(
        "within the fiscal year of the request (April–March), not before today (see the fiscal-year rule)"))
    travel_estimate: int = Field(default=0, ge=0, le=100_000_000, description="estimated travel costs, yen (R-DSP-10)")
    accompanying_staff: list[str] = Field(default_factory=list, description="route A: staff accounts who accompany (R-DSP-05)")
    no_accompaniment_reason: str | None = None


def asked(body: DispatchIn, p: Principal) -> dict:
    return {"_id": new_id("dsp"), "business_id": body.business_id, "expert_id": body.expert_id,
            "issue": body.issue.strip(), "issue_kind": body.issue_kind, "beyond_self_help": body.beyond_self_help,
            "needs_specialist": body.needs_specialist, "support_kinds": list(body.support_kinds),
            "declarations": body.declarations.model_dump(), "planned_visits": plan_doc(body.planned_visits),
            "travel_estimate": body.travel_estimate}


@router.post("/requests", status_code=201, summary="Request an expert dispatch (route A: institution, route B: business)")
async def create_request(body: DispatchIn, request: Request,
                         p: Principal = Depends(require("institution", "business", "founder"))) -> dict:
    store, at = store_of(request), clock()
    doc, made = Dispatch.request(asked(body, p), actor=p.subject, now=at)
    if body.institution_id:  # route A (R-DSP-01): screened at once, in the same write
        must("institution" in p.roles, "Only staff of a support institution may request for an institution.")
        entry = next((o for o in p.orgs if o.get("org_id") == body.institution_id), None)
        must(entry is not None, f"You do not act for institution {body.institution_id}.")
        if not body.business_id:
            raise Rejected("invalid", "Which business?", "Name the business (business_id) that asked your institution "
                           "to request for it.")
        # R-ID-08: an institution files for a business only under the business's recorded delegation
        must(p.delegation(body.business_id, "dispatch:request") is not None,
             f"Business {body.business_id} has not delegated 'dispatch:request' to your institution; it can grant "
             "that at the portal (delegations).")
        people = await store.svc.by_ids("business_people").one(body.business_id) or {}
        if not people.get("prime"):
            raise Rejected("invalid", "The business has no portal account", f"Business {body.business_id} has no proven "
                           "prime account yet; it signs off the visits and rates the expert, so it registers first.")
        staff = body.accompanying_staff or ([] if body.no_accompaniment_reason else [p.subject])
        doc.update(route="A", institution_id=body.institution_id, platform_id=entry.get("platform_id"),
                   business_account_id=people["prime"],
                   # R-DSP-05: staff accompany in principle and follow the business up for about 3 years.
                   accompanying_staff=staff, no_accompaniment_reason=body.no_accompaniment_reason,
                   follow_up_until_fiscal_year=doc["fiscal_year"] + 3, follow_ups=[])
        rights = frozenset(entry.get("rights", ()))
        made = made.then(await screening.screen_request(store, doc, token_rights=rights, actor=p.subject, now=at))
        return public(await store.create(doc, made, actor=p.subject))
    # route B (R-DSP-02): stored as requested; screened once the expert co-signs.
    must(bool(p.roles & {"business", "founder"}), "A direct request is made by the business itself.")
    doc["business_id"] = p.own_business(body.business_id)
    doc.update(route="B", institution_id=None, platform_id=None, business_account_id=p.subject)
    expert_doc, _ = await store.expert(body.expert_id)
    if expert_doc is None:
        raise Rejected("invalid", "Unknown expert", f"Expert {body.expert_id} is not known to the dispatch service.")
    doc["expert_account_id"] = expert_doc["account_id"]
    return public(await store.create(doc, made, actor=p.subject))


@router.get("/requests/{dispatch_id}", summary="A dispatch request, its status, visits, report and payment")
async def get_request(dispatch_id: str, request: Request, p: Principal = Depends(require(*ANY_PARTY))) -> dict:
    return public(await load(request, dispatch_id, p))


class CancelIn(BaseModel):
    reason: str = Field(min_length=3)


@router.post("/requests/{dispatch_id}/cancel", summary="Cancel a dispatch before it is confirmed; the budget is released")
async def cancel(dispatch_id: str, body: CancelIn, request: Request, p: Principal = Depends(require(*ANY_PARTY))) -> dict:
    await load(request, dispatch_id, p, "institution", "business", "agency")
    return public(await store_of(request).change(
        dispatch_id, lambda d: Dispatch(d, clock()).cancel(body.reason, actor=p.subject), actor=p.subject))


class RefuseIn(BaseModel):
    reason: str = Field(min_length=5, description="why the desk finds the request unsuitable, for the applicant")


@router.post("/requests/{dispatch_id}/refuse", summary="The agency refuses a request it finds unsuitable (R-DSP-06, last ground)")
async def refuse(dispatch_id: str, body: RefuseIn, request: Request, p: Principal = Depends(require("agency"))) -> dict:
    await load(request, dispatch_id, p)
    return public(await store_of(request).change(
        dispatch_id, lambda d: Dispatch(d, clock()).desk_refuse(body.reason, actor=p.subject), actor=p.subject))


@router.get("/businesses/{business_id}/free-dispatches", summary="Free dispatches used and remaining this fiscal year (R-DSP-03)")
async def free_dispatches(business_id: str, request: Request, fy: int | None = Query(default=None, alias="fiscal_year", ge=2000, le=2100),
                          p: Principal = Depends(require("business", "founder", "institution", "agency", "operator"))) -> dict:
    store = store_of(request)
    # per-business data: the business itself, an institution it delegated to, the agency and operators (R-ID-07/08)
    if not (p.is_staff or p.may(business_id, "dispatch:read")):
        raise Rejected("not_found", "Not found", f"No business {business_id} visible to you.")
    year = fy or fiscal_year(datetime.now(JST).date())
    prog = await store.programme(year)
    used = await store.used_free_by_id(business_id, year, prog)
    return {"business_id": business_id, "fiscal_year": year, "used": len(used), "dispatch_ids": used,
            "cap": prog.free_dispatches, "remaining": max(0, prog.free_dispatches - len(used)),
            "cap_extended": prog.free_dispatches_extended,
            "remaining_extended": max(0, prog.free_dispatches_extended - len(used)),
            "extended_issue_kinds": sorted(prog.extended_issue_kinds)}


@router.get("/programmes/{fiscal_year}", summary="The dispatch programme of a fiscal year: caps, fee rules")
async def get_programme(request: Request, fiscal_year: int = Path(ge=2000, le=2100), _: Principal = Depends(require(*ANY_PARTY, "bureau"))) -> dict:
    return programme_to_doc(await store_of(request).programme(fiscal_year))
