"""Use case: settling a dispatch — the agency confirms it for payment (findings approved by code), retries a budget
command that went unanswered, settles a shortfall, records fraud and settles its refund (R-DSP-07, R-DSP-08, R-DSP-10,
R-DSP-11, R-DSP-12, R-DSP-13, R-ANC-01)."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dispatch_service.access import clock, load, public, store_of
from dispatch_service.domain import fee_exemption
from dispatch_service.domain.dispatch import Dispatch
from servicekit.auth import Principal, require

router = APIRouter(tags=["dispatch"])


class ConfirmIn(BaseModel):
    travel: int | None = Field(default=None, ge=0, le=100_000_000, description="actual travel costs, yen; default: the estimate")
    note: str = ""
    approve: list[str] = Field(default_factory=list, max_length=10, description=(
        "codes of the findings (unsigned visits, work beyond the R-DSP-07 caps, unaccompanied route-A visits) the agency "
        "approves; without them confirmation is refused and the findings are listed"))


class ShortfallIn(BaseModel):
    decision: Literal["topped_up", "written_off"] = Field(description="topped_up: paid from another source (say which "
                                                          "in the note); written_off: the expert is not paid the rest")
    note: str = Field(min_length=3, max_length=1000)


class FraudIn(BaseModel):
    reason: str = Field(min_length=5)
    account_ids: list[str] = Field(default_factory=list, description="accounts besides the expert and business")


class RefundIn(BaseModel):
    decision: Literal["repaid", "written_off"] = Field(description="repaid: the money came back and is credited to the "
                                                       "frame's ledger; written_off: it will not come back")
    amount: int | None = Field(default=None, ge=1, le=100_000_000, description="yen repaid; default: the amount claimed")
    note: str = Field(min_length=3, max_length=1000)


@router.get("/requests/{dispatch_id}/findings", summary="What the agency must approve before confirming: unsigned or open "
            "visits, work beyond the caps, unaccompanied route-A visits (R-DSP-07, R-DSP-05, R-ANC-01)")
async def get_findings(dispatch_id: str, request: Request, p: Principal = Depends(require("agency", "operator"))) -> dict:
    doc = await load(request, dispatch_id, p)
    prog = await store_of(request).programme(doc["fiscal_year"])
    return {"dispatch_id": dispatch_id, "findings": [f.__dict__ for f in Dispatch(doc, clock()).findings(prog)]}


@router.post("/requests/{dispatch_id}/confirm", summary="The agency confirms the report; the fee is computed and committed")
async def confirm(dispatch_id: str, body: ConfirmIn, request: Request,
                  p: Principal = Depends(require("agency", "operator"))) -> dict:
    store = store_of(request)
    doc = await load(request, dispatch_id, p)
    prog = await store.programme(doc["fiscal_year"])
    expert_doc = (await store.expert(doc["expert_id"]))[0] or {}
    exemption = fee_exemption(expert_employer_id=expert_doc.get("employer_org_id"),
                              requesting_institution_id=doc.get("institution_id"),
                              personnel_cost_subsidised=bool(expert_doc.get("personnel_cost_subsidised")))
    done = await store.change(dispatch_id, lambda d: Dispatch(d, clock()).confirm(
        prog, exemption=exemption, travel=body.travel, approve=body.approve, note=body.note, actor=p.subject),
        actor=p.subject)
    # R-DSP-12 without a race: the block starts now, not when ratings' RatingOwed arrives a moment later
    await store.rating_owed(done)
    return public(done)


@router.post("/requests/{dispatch_id}/budget-retry",
             summary="The agency retries a dispatch whose budget command went unanswered (R-DSP-08, R-DSP-14)")
async def budget_retry(dispatch_id: str, request: Request, p: Principal = Depends(require("agency", "operator"))) -> dict:
    await load(request, dispatch_id, p)
    return public(await store_of(request).change(
        dispatch_id, lambda d: Dispatch(d, clock()).budget_retry(actor=p.subject), actor=p.subject))


@router.post("/requests/{dispatch_id}/shortfall", summary="The agency settles a fee the frame did not cover (visible "
             "until settled; R-DSP-10, R-BUD-03)")
async def settle_shortfall(dispatch_id: str, body: ShortfallIn, request: Request,
                           p: Principal = Depends(require("agency", "operator"))) -> dict:
    await load(request, dispatch_id, p)
    return public(await store_of(request).change(dispatch_id, lambda d: Dispatch(d, clock()).settle_shortfall(
        body.decision, body.note, actor=p.subject), actor=p.subject))


@router.post("/requests/{dispatch_id}/fraud", summary="The agency records proven collusion or fraud (R-DSP-13)")
async def fraud(dispatch_id: str, body: FraudIn, request: Request, p: Principal = Depends(require("agency"))) -> dict:
    await load(request, dispatch_id, p)
    return public(await store_of(request).change(dispatch_id, lambda d: Dispatch(d, clock()).fraud(
        body.reason, body.account_ids, actor=p.subject), actor=p.subject))


@router.post("/requests/{dispatch_id}/refund", summary="The agency settles the refund claimed after fraud: repaid "
             "(credited back to the frame's ledger) or written off (R-DSP-13, R-BUD-05)")
async def settle_refund(dispatch_id: str, body: RefundIn, request: Request, p: Principal = Depends(require("agency"))) -> dict:
    await load(request, dispatch_id, p)
    return public(await store_of(request).change(dispatch_id, lambda d: Dispatch(d, clock()).settle_refund(
        body.decision, body.amount, body.note, actor=p.subject), actor=p.subject))
