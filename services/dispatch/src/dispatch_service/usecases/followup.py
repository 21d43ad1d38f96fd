"""Use case: the requesting institution's follow-up of a route-A dispatch for about three years (R-DSP-05)."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dispatch_service.access import clock, load, public, store_of
from dispatch_service.domain.dispatch import Dispatch
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["dispatch"])


class FollowUpIn(BaseModel):
    kind: Literal["visit", "call", "online", "other"] = "visit"
    note: str = Field(min_length=3, max_length=4000, description="what was checked and what the business does next")


@router.post("/requests/{dispatch_id}/follow-ups", status_code=201,
             summary="The requesting institution records a follow-up of the business (R-DSP-05, about 3 years)")
async def follow_up(dispatch_id: str, body: FollowUpIn, request: Request,
                    p: Principal = Depends(require("institution"))) -> dict:
    doc = await load(request, dispatch_id, p, "institution")
    if doc.get("institution_id") not in {o.get("org_id") for o in p.orgs}:
        raise Rejected("forbidden", "Forbidden", "Only the requesting institution follows the business up.")
    return public(await store_of(request).change(dispatch_id, lambda d: Dispatch(d, clock()).follow_up(
        note=body.note, kind=body.kind, actor=p.subject), actor=p.subject))
