"""Use case: the plan and the visits — the desk schedules, the expert checks in and out or declares a time, the
business signs each visit off, the expert reports (R-DSP-06, R-DSP-07, R-DSP-09, R-ANC-01, the fiscal-year rule)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dispatch_service.access import clock, load, public, store_of
from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.domain.eligibility import PlannedVisit
from dispatch_service.store import new_id
from dispatch_service.usecases.request import PlannedVisitIn
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["dispatch"])


class ScheduleIn(BaseModel):
    planned_visits: list[PlannedVisitIn] | None = Field(default=None, description="the final plan; omit to keep it")


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


class ReportIn(BaseModel):
    """R-DSP-09: the expert's report after the visits."""

    summary: str = Field(min_length=10)
    proposals: str = ""
    follow_up: str = ""


@router.post("/requests/{dispatch_id}/schedule", summary="Fix the visit plan of an approved dispatch (the desk, not the expert: R-DSP-06)")
async def schedule(dispatch_id: str, body: ScheduleIn, request: Request,
                   p: Principal = Depends(require("institution", "agency", "operator"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p, "institution", "agency")
    prog = await store.programme(doc["fiscal_year"])
    plan = None if body.planned_visits is None else tuple(PlannedVisit(v.day, v.hours, v.mode) for v in body.planned_visits)
    return public(await store.change(
        dispatch_id, lambda d: Dispatch(d, clock()).schedule(plan, prog, actor=p.subject), actor=p.subject))


@router.post("/requests/{dispatch_id}/visits", status_code=201, summary="The expert checks in to a visit (time and location)")
async def check_in(dispatch_id: str, body: CheckIn, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p, "expert")
    prog, vid = await store.programme(doc["fiscal_year"]), new_id("visit")
    done = await store.change(dispatch_id, lambda d: Dispatch(d, clock()).check_in(
        visit_id=vid, mode=body.mode, location=body.location.model_dump(), accompanied_by=body.accompanied_by,
        prog=prog, actor=p.subject), actor=p.subject)
    return {"visit_id": vid, **public(done)}


@router.post("/requests/{dispatch_id}/visits/{visit_id}/check-out", summary="The expert checks out of a visit")
async def check_out(dispatch_id: str, visit_id: str, body: CheckOut, request: Request,
                    p: Principal = Depends(require("expert"))) -> dict:
    await load(request, dispatch_id, p, "expert")
    return public(await store_of(request).change(dispatch_id, lambda d: Dispatch(d, clock()).check_out(
        visit_id=visit_id, location=body.location.model_dump(), actor=p.subject), actor=p.subject))


@router.post("/requests/{dispatch_id}/visits/declarations", status_code=201,
             summary="A signed declaration for a missing or corrected visit time (R-ANC-01)")
async def declare(dispatch_id: str, body: DeclarationIn, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    await load(request, dispatch_id, p, "expert")
    if not body.signed:
        raise Rejected("invalid", "Declaration not signed", "A missing or corrected time report must be signed by the expert.")
    new_vid, declared = new_id("visit"), {}

    def decide(d: dict):
        declared["visit_id"], change = Dispatch(d, clock()).declare(
            visit_id=body.visit_id, new_visit_id=new_vid, start=body.start, end=body.end, mode=body.mode,
            reason=body.reason, signature=body.signature, actor=p.subject)
        return change

    done = await store_of(request).change(dispatch_id, decide, actor=p.subject)
    return {"visit_id": declared["visit_id"], **public(done)}


@router.post("/requests/{dispatch_id}/visits/{visit_id}/sign-off", summary="The business signs off a visit (従事証明, R-ANC-01)")
async def sign_off(dispatch_id: str, visit_id: str, body: SignOff, request: Request,
                   p: Principal = Depends(require("business", "founder"))) -> dict:
    await load(request, dispatch_id, p, "business")
    return public(await store_of(request).change(dispatch_id, lambda d: Dispatch(d, clock()).sign_off(
        visit_id=visit_id, agree=body.agree, comment=body.comment, actor=p.subject), actor=p.subject))


@router.post("/requests/{dispatch_id}/report", summary="The expert files the report (R-DSP-09)")
async def report(dispatch_id: str, body: ReportIn, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    await load(request, dispatch_id, p, "expert")
    return public(await store_of(request).change(dispatch_id, lambda d: Dispatch(d, clock()).report(
        summary=body.summary, proposals=body.proposals, follow_up=body.follow_up, actor=p.subject), actor=p.subject))
