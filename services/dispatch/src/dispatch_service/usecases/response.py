"""Use case: the expert's answer within the deadline, and the desk's reassignment when it does not come (R-EX-06)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dispatch_service.access import clock, load, public, store_of
from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.domain.eligibility import Application, check_expert
from dispatch_service.screening import planned
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["dispatch"])


class ReassignIn(BaseModel):
    expert_id: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=3, max_length=1000)


@router.post("/requests/{dispatch_id}/acknowledge", summary="The expert takes on an approved dispatch within the "
             "response deadline (R-EX-06)")
async def acknowledge(dispatch_id: str, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    await load(request, dispatch_id, p, "expert")
    return public(await store_of(request).change(
        dispatch_id, lambda d: Dispatch(d, clock()).acknowledge(actor=p.subject), actor=p.subject))


@router.post("/requests/{dispatch_id}/reassign", summary="The agency gives an approved dispatch to another expert "
             "(R-EX-06); the new expert must be dispatchable and not at capacity")
async def reassign(dispatch_id: str, body: ReassignIn, request: Request, p: Principal = Depends(require("agency"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    expert_doc, state = await store.expert(body.expert_id)
    app = Application(route=doc["route"], business_id=doc["business_id"], fiscal_year=doc["fiscal_year"],
                      issue=doc["issue"], planned=planned(doc))
    if problems := check_expert(app, state):
        raise Rejected("invalid", "This expert cannot take the dispatch", " ".join(r.message for r in problems),
                       reasons=[r.__dict__ for r in problems])
    return public(await store.change(dispatch_id, lambda d: Dispatch(d, clock()).reassign(
        expert_id=body.expert_id, expert_account_id=expert_doc["account_id"], reason=body.reason, actor=p.subject),
        actor=p.subject))
