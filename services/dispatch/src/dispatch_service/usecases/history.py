"""Use case: the support history (個人カルテ, R-POR-06) with route-A follow-ups (R-DSP-05).

Institutions' staff log consultations per business; the business shares its history with a named institution and
withdraws the sharing at any time (its own account, never a typed-in id: R-ID-07); another institution sees the history
only while shared; the agency and operators see it for oversight, as they see every dispatch. Every read that shows
another institution's entries is recorded, and the business lists those reads."""
from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from dispatch_service.access import is_agency, org_ids
from dispatch_service.domain import history as rules
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["support history"])

BUSINESS_ID = Query(default=None, min_length=1, max_length=100,
                    description="a business account: omit to use the business it is bound to (R-ID-07)")


def history_of(request: Request):
    return request.app.state.history


class EntryIn(BaseModel):
    business_id: str = Field(min_length=1, max_length=100, description="the business consulted")
    org_id: str | None = Field(default=None, min_length=1, max_length=100,
                               description="omit when your account acts for one institution only")
    consulted_on: date = Field(description="the day of the consultation (not in the future)")
    topic: str = Field(min_length=2, max_length=300)
    summary: str = Field(min_length=3, max_length=4000)
    next_steps: str | None = Field(default=None, max_length=4000)
    staff: str | None = Field(default=None, max_length=300, description="the staff who held it (names)")


class GrantIn(BaseModel):
    org_id: str = Field(min_length=1, max_length=100, description="the institution to share the history with")
    business_id: str | None = Field(default=None, min_length=1, max_length=100,
                                    description="omit to use the business your account is bound to (R-ID-07)")


class WithdrawIn(BaseModel):
    business_id: str | None = Field(default=None, min_length=1, max_length=100,
                                    description="omit to use the business your account is bound to (R-ID-07)")


def business_of(p: Principal, business_id: str | None) -> str:
    """The business whose sharing is listed: the caller's own (R-ID-07), or for the agency the one it names."""
    if is_agency(p) and not p.acts_for(business_id):
        if business_id is None:
            raise Rejected("invalid", "Which business?", "Name business_id.")
        return business_id
    return p.own_business(business_id)


def grant_out(g: dict) -> dict:
    return {"business_id": g["business_id"], "org_id": g["org_id"], "in_force": rules.in_force(g),
            **{k: g.get(k) for k in ("granted_at", "granted_by", "withdrawn_at", "withdrawn_by", "acts")}}


@router.post("/support-history/entries", status_code=201,
             summary="Institution staff log a consultation with a business in its support history (R-POR-06)")
async def log_consultation(body: EntryIn, request: Request, p: Principal = Depends(require("institution"))) -> dict:
    org = rules.logging_org(sorted(o for o in org_ids(p) if o), body.org_id)
    return await history_of(request).log(business_id=body.business_id, org_id=org, consulted_on=body.consulted_on,
                                         topic=body.topic, summary=body.summary, next_steps=body.next_steps,
                                         staff=body.staff, actor=p.subject)


@router.get("/support-history",
            summary="A business's support history: consultations and route-A follow-ups (R-POR-06, R-DSP-05); an "
                    "institution sees its own entries, and the others' only while the business shares its history")
async def read_history(request: Request, business_id: str | None = BUSINESS_ID,
                       p: Principal = Depends(require("business", "founder", "institution", "agency", "operator"))) -> dict:
    h = history_of(request)
    if p.roles & {"business", "founder"} and (business_id is None or p.acts_for(business_id)):
        bid, viewer = p.own_business(business_id), rules.Viewer("business")
    elif is_agency(p):
        if business_id is None:
            raise Rejected("invalid", "Which business?", "Name business_id.")
        bid, viewer = business_id, rules.Viewer("oversight")
    elif "institution" in p.roles:
        if business_id is None:
            raise Rejected("invalid", "Which business?", "Name business_id.")
        orgs = frozenset(o for o in org_ids(p) if o)
        if not orgs:
            raise Rejected("forbidden", "No institution", "Your account is not linked to an institution.")
        bid = business_id
        viewer = rules.Viewer("institution", orgs, shared=await h.shared_with(bid, set(orgs)))
    else:
        bid = p.own_business(business_id)  # refuses: not the business's account
        viewer = rules.Viewer("business")
    items = await h.view(bid, viewer, p.subject)
    return {"business_id": bid, "viewer": viewer.kind, "shared_with_you": viewer.shared, "items": items}


@router.post("/support-history/grants", status_code=201,
             summary="The business shares its support history with a named institution (支援情報の共有, R-POR-06)")
async def grant_sharing(body: GrantIn, request: Request, p: Principal = Depends(require("business", "founder"))) -> dict:
    bid = p.own_business(body.business_id)
    h = history_of(request)
    if await h.db.organisations.find_one({"_id": body.org_id}, {"_id": 1}) is None:
        raise Rejected("invalid", "Unknown institution", f"No organisation {body.org_id} is registered at the portal.")
    return grant_out(await h.grant(bid, body.org_id, p.subject))


@router.post("/support-history/grants/{org_id}/withdraw",
             summary="The business withdraws the sharing of its support history with an institution (R-POR-06)")
async def withdraw_sharing(org_id: str, request: Request, body: WithdrawIn | None = None,
                           p: Principal = Depends(require("business", "founder"))) -> dict:
    bid = p.own_business(body.business_id if body else None)
    return grant_out(await history_of(request).withdraw(bid, org_id, p.subject))


@router.get("/support-history/grants",
            summary="With whom the business shares its support history, and every grant and withdrawal (R-POR-06)")
async def list_grants(request: Request, business_id: str | None = BUSINESS_ID,
                      p: Principal = Depends(require("business", "founder", "agency", "operator"))) -> dict:
    bid = business_of(p, business_id)
    return {"business_id": bid, "grants": await history_of(request).grants(bid)}


@router.get("/support-history/shared",
            summary="Institution staff: the businesses that share their support history with your institution now")
async def shared_with_me(request: Request, p: Principal = Depends(require("institution"))) -> dict:
    orgs = {o for o in org_ids(p) if o}
    if not orgs:
        raise Rejected("forbidden", "No institution", "Your account is not linked to an institution.")
    return {"org_ids": sorted(orgs), "businesses": await history_of(request).shared_with_orgs(orgs)}


@router.get("/support-history/reads",
            summary="Who read the business's support history beyond the institutions that wrote it (R-POR-06)")
async def list_reads(request: Request, business_id: str | None = BUSINESS_ID,
                     p: Principal = Depends(require("business", "founder", "agency", "operator"))) -> dict:
    bid = business_of(p, business_id)
    return {"business_id": bid, "reads": await history_of(request).reads(bid)}
